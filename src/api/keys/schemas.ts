import { Type } from '@sinclair/typebox';
import { KeyView } from '../../engine/views/schemas.js';
import { PageOf, PageQuery, RefTo } from '../shared/schemas.js';

export const KeysQuery = Type.Object({ ...PageQuery }, { additionalProperties: false });

export const KeyPage = PageOf(RefTo(KeyView));
