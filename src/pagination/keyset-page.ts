import { InvalidCursorError } from '../errors/index.js'
import type { CursorBinding, CursorCodec } from './cursor-codec.js'
import { keyColumn, keysetCondition, keysetOrder, keySelect } from './keyset.js'
import type { KeysetPage } from './page.js'
import { checkKeysetRequest } from './requests.js'
import type { PageSource } from './source.js'

/**
 * One page after or before a signed cursor from a scoped read. The cursor carries the sort-key values of a row (as
 * PostgreSQL text, so timestamps keep their microseconds) and is bound to `binding` (model, sort, filter, actor): a
 * cursor from another read is an {@link InvalidCursorError}. One more row than the page is read to learn whether
 * the list goes on; only the first and last rows get cursors.
 *
 * @internal
 */
export async function keysetPage<Item>(
  source: PageSource<Item>,
  request: unknown,
  codec: CursorCodec,
  binding: CursorBinding,
): Promise<KeysetPage<Item>> {
  const { size, after, before } = checkKeysetRequest(request)
  const { table, where, bindings, sort } = source
  const backward = before !== undefined
  const cursor = before ?? after
  let values: (string | null)[] | undefined
  if (cursor !== undefined) {
    const decoded = codec.decode(cursor, binding)
    if (decoded.length !== sort.keys.length || !decoded.every((v) => v === null || typeof v === 'string')) {
      throw new InvalidCursorError()
    }
    values = decoded
  }
  const condition = values === undefined ? undefined : keysetCondition(sort.keys, values, backward)
  const conditions =
    condition === undefined ? where : where === '' ? ` where ${condition.sql}` : `${where} and ${condition.sql}`
  const sql =
    `select ${table}.*, ${keySelect(sort.keys)} from ${table}${conditions} ` +
    `order by ${keysetOrder(sort.keys, backward)} limit ?`
  const result = await source.run<Record<string, unknown>>(sql, [...bindings, ...(condition?.bindings ?? []), size + 1])
  const more = result.rows.length > size
  const rows = result.rows.slice(0, size)
  if (backward) rows.reverse()
  const keyColumns = sort.keys.map((_, i) => keyColumn(i))
  // Selected as ::text, so strings or NULLs.
  const cursorOf = (row: Record<string, unknown> | undefined): string | null =>
    row === undefined
      ? null
      : codec.encode(
          binding,
          keyColumns.map((column) => (row[column] as string | null | undefined) ?? null),
        )
  const startCursor = cursorOf(rows[0])
  const endCursor = rows.length > 1 ? cursorOf(rows[rows.length - 1]) : startCursor
  return {
    // BaseModel leaves the key columns out of the models.
    items: rows.map((row) => source.item(row)),
    pageInfo: {
      hasNextPage: backward ? true : more,
      hasPreviousPage: backward ? more : after !== undefined,
      startCursor,
      endCursor,
    },
  }
}
