// Kept only for src/api/routes/ui.ts (the status page's routes, moving with the UI's own
// reorganisation), which imports ErrorRef from here: the error schema is in shared/schemas.ts.
// Delete this file once ui.ts imports '../shared/schemas.js' instead.
export { ErrorRef, ErrorResponse } from '../shared/schemas.js';
