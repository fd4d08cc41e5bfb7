// The completion-key table, a page at a time.
import type { EngineControlLike } from '../control.js';
import { sendPage } from '../shared/paced-body.js';
import { resourcePlugin } from '../shared/plugin.js';
import type { ThreadShare } from '../thread-share.js';
import { KeyPage, KeysQuery } from './schemas.js';

export const keyRoutes = resourcePlugin<{ control: EngineControlLike; share: ThreadShare }>(
  'keys',
  async (app, { control, share }) => {
    app.get(
      '/keys',
      {
        schema: {
          operationId: 'listKeys',
          summary: 'The completion-key table, paginated',
          description:
            'In slot order (index ascending). `total` counts every live key (a kept count); the walk ' +
            'stops at the page.',
          tags: ['engine'],
          querystring: KeysQuery,
          response: { 200: KeyPage },
        },
      },
      async (req, reply) => {
        const { offset, limit } = req.query;
        const page = control.keys({ offset, limit });
        return sendPage(reply, share, page, { offset, limit });
      },
    );
  },
);
