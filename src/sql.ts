/**
 * `@wincloud/data/sql`: the SQL normalization that groups queries in `db.stats()`, to find the group of a query from
 * its text.
 *
 * @example
 * ```ts
 * import { normalizeSql } from '@wincloud/data/sql'
 *
 * normalizeSql("select * from droplets where user_id = $1 and status in ('active', 'stopped') limit 20")
 * // 'select * from droplets where user_id = ? and status in (?...) limit ?'
 * ```
 *
 * @packageDocumentation
 */
export { normalizeSql } from './observability/query-stats.js'
