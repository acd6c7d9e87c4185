/**
 * An offset page request: page `number` (from 1) of `size` rows. `exactTotal: true` counts the matching rows;
 * otherwise `total` is the planner's estimate (cheap, and said so by `totalExact: false`).
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
 * A page by number.
 *
 * @example
 * ```ts
 * const { items, total, totalExact, hasNextPage }: OffsetPage<Droplet> = await repo.list({ page: { number: 1 } })
 * ```
 */
export interface OffsetPage<M> {
  readonly items: M[]
  readonly page: number
  readonly size: number
  /** Matching rows: exact when `totalExact`, else the planner's estimate (never below what was seen). */
  readonly total: number
  readonly totalExact: boolean
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
