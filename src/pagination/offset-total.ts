/**
 * How an offset page's `total` is chosen. The rule: a total never depends on rows outside the scope that asks.
 * Planner estimates come from statistics over the whole table, so only scopes that see the whole table (admins,
 * `system`) get them; a scope limited to its own rows gets a count of its own rows, capped so that a user with
 * hundreds of thousands of rows does not pay a full count on every page.
 *
 * @internal
 */

/**
 * How many rows a scope limited to its own rows counts for a total it did not ask to be exact. Counting stops one
 * row past the bound, so a page costs at most this many index entries more than its own query.
 *
 * @internal
 */
export const TOTAL_COUNT_CAP = 10_000

/** What the page query has shown: where the page starts, how many rows it returned, and whether one more exists. */
export interface OffsetPageSeen {
  readonly offset: number
  readonly shown: number
  readonly hasNextPage: boolean
}

/** The ways to learn a total, each run only when needed. @internal */
export interface TotalSources {
  /** `count(*)` of the matching rows in the scope. */
  count(): Promise<number>
  /** `count(*)` of at most `limit` matching rows in the scope. */
  countUpTo(limit: number): Promise<number>
  /** The planner's estimate of the matching rows; only called when `estimateAllowed`. */
  estimate(): Promise<number>
}

/** An offset page's total: exact, capped (more than `total` rows match), or an estimate (neither flag). */
export interface ChosenTotal {
  readonly total: number
  readonly totalExact: boolean
  readonly totalCapped: boolean
}

/**
 * The total of an offset page.
 *
 * - What the page proves needs no count: a page that shows rows and ends the list gives the exact total, and an
 *   empty first page gives 0.
 * - An empty page past the end counts what lies before it, at most `offset` rows (rows the page query has just
 *   read), so its total is exact and never more than the offset.
 * - `exactTotal` counts every matching row in the scope.
 * - A scope limited to its own rows (`estimateAllowed: false`) counts up to {@link TOTAL_COUNT_CAP} rows, or up to
 *   the row after the page when that is further: below the bound the total is exact, above it the total is the
 *   bound and `totalCapped` says that more rows match.
 * - Otherwise (a scope that sees the whole table) the total is the planner's estimate.
 * - A total is never below the rows the page shows to exist (a cached or concurrent count is corrected).
 *
 * @internal
 */
export async function chooseOffsetTotal(
  seen: OffsetPageSeen,
  options: { readonly exactTotal: boolean; readonly estimateAllowed: boolean },
  sources: TotalSources,
): Promise<ChosenTotal> {
  const { offset, shown, hasNextPage } = seen
  const exact = (total: number): ChosenTotal => ({ total, totalExact: true, totalCapped: false })
  if (shown > 0 && !hasNextPage) return exact(offset + shown)
  if (shown === 0) return exact(offset === 0 ? 0 : Math.min(await sources.countUpTo(offset), offset))
  const floor = offset + shown + 1
  if (options.exactTotal) return exact(Math.max(await sources.count(), floor))
  if (!options.estimateAllowed) {
    const bound = Math.max(TOTAL_COUNT_CAP, floor)
    const counted = await sources.countUpTo(bound + 1)
    return counted > bound ? { total: bound, totalExact: false, totalCapped: true } : exact(Math.max(counted, floor))
  }
  const estimate = await sources.estimate()
  return {
    total: Math.max(Number.isFinite(estimate) ? Math.round(estimate) : 0, floor),
    totalExact: false,
    totalCapped: false,
  }
}
