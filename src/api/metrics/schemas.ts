import { Type } from '@sinclair/typebox';

export const Exposition = Type.String({
  description:
    'Prometheus exposition; keyport metrics are prefixed keyport_; process and Node.js metrics are the standard process_* and nodejs_*',
});
