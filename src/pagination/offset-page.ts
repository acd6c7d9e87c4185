import { chooseOffsetTotal } from './offset-total.js'
import type { OffsetPage } from './page.js'
import { checkOffsetRequest } from './requests.js'
import type { PageSource } from './source.js'

/**
 * One page by number from a scoped read: the rows of the page (one more is read to learn whether a next page
 * exists), and its total chosen by {@link chooseOffsetTotal} (a count, a capped count or an estimate, each only when
 * needed). `estimateAllowed` only for scopes that see the whole table: the planner estimates from statistics over
 * every row, so for a scope limited to its own rows an estimate would tell it about other tenants' rows. `count` is
 * the repository's count of the same read (it may come from the read cache).
 *
 * @internal
 */
export async function offsetPage<Item>(
  source: PageSource<Item>,
  request: unknown,
  options: { readonly estimateAllowed: boolean; readonly count: () => Promise<number> },
): Promise<OffsetPage<Item>> {
  const { number, size, exactTotal } = checkOffsetRequest(request)
  const { table, where, bindings, sort } = source
  const offset = (number - 1) * size
  const sql = `select ${table}.* from ${table}${where} order by ${sort.sql} limit ? offset ?`
  const rows = await source.run<Record<string, unknown>>(sql, [...bindings, size + 1, offset])
  const hasNextPage = rows.rows.length > size
  const items = rows.rows.slice(0, size).map((row) => source.item(row))
  const { total, totalExact, totalCapped } = await chooseOffsetTotal(
    { offset, shown: items.length, hasNextPage },
    { exactTotal, estimateAllowed: options.estimateAllowed },
    {
      count: options.count,
      countUpTo: async (limit) => {
        const countSql = `select count(*)::int8 as count from (select 1 from ${table}${where} limit ?) as counted`
        const result = await source.run<{ count: string }>(countSql, [...bindings, limit])
        return Number(result.rows[0]?.count ?? 0)
      },
      estimate: async () => {
        const estimateSql = `explain (format json) select 1 from ${table}${where}`
        const plan = await source.run<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(estimateSql, bindings)
        return plan.rows[0]?.['QUERY PLAN'][0].Plan['Plan Rows'] ?? 0
      },
    },
  )
  return {
    items,
    page: number,
    size,
    total,
    totalExact,
    totalCapped,
    totalPages: Math.ceil(total / size),
    hasNextPage,
  }
}
