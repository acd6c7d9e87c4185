/**
 * An offset page request: page `number` (from 1) of `size` rows. `exactTotal: true` counts every matching row;
 * otherwise a scope limited to its own rows counts them up to a bound (10,000), and a scope that sees the whole table
 * (admins, `system`) gets the planner's estimate. See {@link OffsetPage} for what each total says.
 *
 * @example
 * ```ts
 * const page = await scope.repo(Droplet).list({ sort: ['name'], page: { number: 3, size: 20 } })
 * ```
 */
export interface OffsetPageRequest {
  readonly number: number
  readonly size?: number
  readonly exactTotal?: boolean
}

/**
 * A keyset page request: `size` rows after (or before) a cursor from an earlier page; neither for the first page.
 *
 * @example
 * ```ts
 * const next = await scope.repo(Droplet).list({ sort: ['-createdAt'], page: { size: 20, after: req.query.cursor } })
 * ```
 */
export interface KeysetPageRequest {
  readonly size?: number
  readonly after?: string
  readonly before?: string
}

/**
 * A page by number. A total depends only on rows the scope may see: a scope limited to its own rows never gets the
 * planner's estimate (it comes from statistics over every tenant's rows), only counts of its own rows.
 *
 * @example
 * ```ts
 * const { items, total, totalExact, totalCapped, hasNextPage }: OffsetPage<Droplet> = await repo.list({
 *   page: { number: 1 },
 * })
 * const shown = totalExact ? `${total}` : totalCapped ? `${total}+` : `about ${total}`
 * ```
 */
export interface OffsetPage<M> {
  readonly items: M[]
  readonly page: number
  readonly size: number
  /**
   * Matching rows in the scope: exact when `totalExact`; a lower bound when `totalCapped` (more rows match);
   * otherwise the planner's estimate (only for scopes that see the whole table). Never below the rows the page
   * shows to exist, and 0 for an empty first page.
   */
  readonly total: number
  /**
   * Whether `total` is the exact count: always with `exactTotal: true`, for a scope limited to its own rows whose
   * rows matching the filter are at most 10,000, and whenever the page itself shows the total (a last page, an empty
   * page).
   */
  readonly totalExact: boolean
  /**
   * Whether `total` is a cap rather than a count: a scope limited to its own rows counts at most 10,000 matching rows
   * (or up to the row after a deeper page) unless it passes `exactTotal: true`; when more match, `total` is that bound
   * and this is true. Show it as "10,000+"; `hasNextPage` stays exact.
   *
   * @example
   * ```ts
   * const page = await scope.repo(Droplet).list({ page: { number: 1, size: 20 } })
   * const label = page.totalCapped ? `${page.total.toLocaleString()}+ droplets` : `${page.total} droplets`
   * ```
   */
  readonly totalCapped: boolean
  /** `ceil(total / size)`: with a capped or estimated total, a lower bound or an estimate too. */
  readonly totalPages: number
  readonly hasNextPage: boolean
}

/**
 * Where a keyset page sits. Cursors are opaque, signed, and valid only with the same sort, filter and actor.
 *
 * @example
 * ```ts
 * const info: PageInfo = page.pageInfo
 * if (info.hasNextPage) link.next = `/droplets?after=${info.endCursor}`
 * ```
 */
export interface PageInfo {
  readonly hasNextPage: boolean
  readonly hasPreviousPage: boolean
  /** The cursor of the first item (to ask for the page before), or null for an empty page. */
  readonly startCursor: string | null
  /** The cursor of the last item (to ask for the page after), or null for an empty page. */
  readonly endCursor: string | null
}

/**
 * A page by cursor.
 *
 * @example
 * ```ts
 * const { items, pageInfo }: KeysetPage<Droplet> = await repo.list({ page: { size: 20 } })
 * ```
 */
export interface KeysetPage<M> {
  readonly items: M[]
  readonly pageInfo: PageInfo
}

/** Page size limits. @internal */
export const PAGE_SIZE = Object.freeze({ default: 20, max: 100 })
