import type { Knex } from 'knex'
import { InvalidCursorError } from '../errors/index.js'
import { parseLsn } from '../internal/lsn.js'
import type { CursorCodec } from '../pagination/cursor-codec.js'

// A consistency token is signed like a cursor, by the same secrets, bound to a "model" no model can be named (so a
// cursor is never a token nor a token a cursor) and to the actor.
const binding = (actor: string) => ({ model: '(consistency)', sort: '', filter: '', actor })

/**
 * A consistency token: the primary's WAL position, signed and bound to `actor`.
 *
 * @internal
 */
export function encodeConsistencyToken(codec: CursorCodec, actor: string, position: string): string {
  return codec.encode(binding(actor), [position])
}

/**
 * The WAL position of a consistency token made for `actor` by a process sharing the signing secrets. Anything else
 * (altered, forged, another actor's, a cursor) is an `InvalidCursorError`, as a forged cursor is.
 *
 * @internal
 */
export function decodeConsistencyToken(codec: CursorCodec, actor: string, token: unknown): bigint {
  let values: unknown[]
  try {
    values = codec.decode(token, binding(actor))
  } catch {
    throw new InvalidCursorError('Invalid consistency token: it was altered, or it belongs to another user.')
  }
  const position = values.length === 1 ? parseLsn(values[0]) : undefined
  if (position === undefined) throw new InvalidCursorError('Invalid consistency token.')
  return position
}

/**
 * Where the primary's WAL ends now: every commit acknowledged before this call is at or before it. The insert
 * position, not the write position: with synchronous_commit off, a commit record may still be in the WAL buffers.
 *
 * @internal
 */
export async function primaryPosition(knex: Knex): Promise<string> {
  const { rows } = await knex.raw<{ rows: { lsn: string }[] }>('select pg_current_wal_insert_lsn()::text as lsn')
  return rows[0]!.lsn
}
