// The engine door as far as the public routes (/healthz, /readyz) read it: for tests that build
// the API in process with a token, to see which routes answer without one.
export const publicReadsControl = {
  startedAt: Date.now(),
  readiness: () => ({
    ready: true,
    backend: 'stub',
    listeners: 1,
    loopTurning: true,
    lastHeartbeatAgeMs: 0,
    degradedListeners: [],
    anomalies: { stray: 0, keyMismatch: 0, duplicate: 0, quarantinedRecords: 0 },
    reasons: [],
  }),
};
