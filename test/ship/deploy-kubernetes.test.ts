// Every document of deploy/kubernetes/*.yaml is a valid Kubernetes object: checked against the
// OpenAPI schemas of Kubernetes (npm kubernetes-models) and, for the PodMonitor, of the
// Prometheus Operator's CRDs (@kubernetes-models/prometheus-operator), the way the API server
// would check types, required fields, enums and formats before anything reaches a cluster. A kind
// this test has no schema for fails it, so no document goes unchecked. Then the facts that tie the
// files together: the nodes the pods may land on run the Windows build of the image, and the
// startupProbe, PodDisruptionBudget and PodMonitor select and name what the Deployment has.
// (What these schemas do not catch: unknown fields. Kubernetes' schemas allow them and only the
// API server's strict field validation refuses them; the fields that matter are asserted below.)
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as monitoringV1 from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as networkingV1 from 'kubernetes-models/networking.k8s.io/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as coreV1 from 'kubernetes-models/v1';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { ROOT } from '../helpers/keyport.js';

// biome-ignore lint/suspicious/noExplicitAny: a manifest is whatever YAML it is
type Doc = any;
type Model = new (data: Doc) => { validate(): void };

/** The schema of each apiVersion/kind the manifests may use. */
const MODELS: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'policy/v1': policyV1,
  'networking.k8s.io/v1': networkingV1,
  'monitoring.coreos.com/v1': monitoringV1,
};

/** Why `doc` is not a valid object of its kind, or null when it is. */
function invalid(doc: Doc): string | null {
  if (!doc || typeof doc !== 'object') return 'not a mapping';
  const Kind = MODELS[doc.apiVersion]?.[doc.kind] as Model | undefined;
  if (typeof Kind !== 'function') return `no schema here for ${doc.apiVersion} ${doc.kind}`;
  try {
    new Kind(doc).validate();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

const DIR = join(ROOT, 'deploy', 'kubernetes');
const files = readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f));
const docs: { file: string; doc: Doc }[] = [];
for (const file of files) {
  for (const d of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    if (d.contents !== null) docs.push({ file, doc: d.toJS() });
  }
}
const one = (kind: string) => docs.filter((d) => d.doc.kind === kind).map((d) => d.doc)[0];
const deployment = one('Deployment');
const pod = deployment.spec.template;
const container = pod.spec.containers[0];

t.test('every document of deploy/kubernetes/*.yaml passes its Kubernetes schema', async (t) => {
  t.ok(files.includes('keyport.yaml') && files.includes('podmonitor.yaml'), files.join(', '));
  for (const { file, doc } of docs) {
    const name = `${file}: ${doc?.kind} ${doc?.metadata?.name}`;
    t.equal(invalid(doc), null, name);
    t.ok(doc.metadata?.name, `${name} has a name`);
    if (doc.kind !== 'Namespace') t.equal(doc.metadata.namespace, 'keyport', `${name} namespace`);
  }
  const kinds = docs.map((d) => d.doc.kind).sort();
  t.same(kinds, [
    'ConfigMap',
    'Deployment',
    'Namespace',
    'NetworkPolicy',
    'PodDisruptionBudget',
    'PodMonitor',
    'Service',
  ]);
});

t.test('the validation itself refuses broken manifests', async (t) => {
  // If the schemas were not loaded or not applied, everything above would pass: break copies of
  // the real documents in ways the API server refuses, and see each refused.
  const copy = () => structuredClone(deployment);
  const a = copy();
  a.spec.template.spec.containers[0].ports[0].containerPort = 'seven thousand';
  t.match(invalid(a), /containerPort must be integer/);
  const b = copy();
  delete b.spec.selector;
  t.match(invalid(b), /required property 'selector'|required property selector/);
  const c = copy();
  c.spec.template.spec.containers[0].startupProbe.httpGet.path = 42;
  t.match(invalid(c), /startupProbe\/httpGet\/path must be string/);
  const pm = structuredClone(one('PodMonitor'));
  pm.spec.podMetricsEndpoints[0].interval = 'every 30 seconds';
  t.match(invalid(pm), /interval must match pattern/);
  t.match(invalid({ apiVersion: 'v1', kind: 'Nothing' }), /no schema/);
});

t.test('Windows nodes of the image build only (nodeSelector, not a RuntimeClass)', async (t) => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile.windows'), 'utf8');
  const build = /^ARG WINDOWS_BUILD=(\d+\.\d+\.\d+)\.\d+$/m.exec(dockerfile)?.[1];
  t.equal(build, '10.0.20348', 'the image is Windows Server 2022 (LTSC)');
  t.same(pod.spec.nodeSelector, {
    'kubernetes.io/os': 'windows',
    'kubernetes.io/arch': 'amd64',
    'node.kubernetes.io/windows-build': build,
  });
  t.notOk(pod.spec.runtimeClassName, 'no RuntimeClass to install beside the manifest');
});

t.test('startupProbe, probes and the PodDisruptionBudget', async (t) => {
  t.match(container.startupProbe.httpGet, { path: '/healthz', port: 'api' });
  const s = container.startupProbe;
  t.ok(s.periodSeconds * s.failureThreshold >= 30, 'at least 30 s to start');
  t.notOk(container.livenessProbe.initialDelaySeconds, 'the startupProbe replaces the delay');
  const pdb = one('PodDisruptionBudget');
  t.same(pdb.spec.selector.matchLabels, pod.metadata.labels, 'the PDB selects the pods');
  t.equal(pdb.spec.maxUnavailable, 1);
  t.ok(deployment.spec.replicas > pdb.spec.maxUnavailable, 'a drain never takes them all');
});

t.test('the PodMonitor scrapes every replica on its api port', async (t) => {
  const pm = one('PodMonitor');
  t.same(pm.spec.selector.matchLabels, pod.metadata.labels, 'it selects the pods');
  const ep = pm.spec.podMetricsEndpoints[0];
  t.ok(
    container.ports.some((p: { name: string }) => p.name === ep.port),
    `port ${ep.port} is a named container port`,
  );
  t.equal(ep.path, pod.metadata.annotations['prometheus.io/path']);
  t.equal(pm.spec.jobLabel, 'app.kubernetes.io/name');
  t.equal(pod.metadata.labels[pm.spec.jobLabel], 'keyport', 'job="keyport", as the docs query');
});
