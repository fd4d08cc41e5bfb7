import { Type } from '@sinclair/typebox';
import { ListenerView } from '../../engine/views/schemas.js';
import { RefTo } from '../shared/schemas.js';

export const ListenerList = Type.Object({ items: Type.Array(RefTo(ListenerView)) });

export const CloseListenerQuery = Type.Object(
  {
    mode: Type.Union([Type.Literal('drain'), Type.Literal('abort')], { default: 'drain' }),
    deadlineMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 30_000 }),
  },
  { additionalProperties: false },
);
