import type pg from 'pg'

/**
 * What one round of health queries found.
 *
 * @internal
 */
export interface ProbeResult {
  serverVersion: string
  inRecovery: boolean
  tables: Record<string, { rows: number; exact: boolean }>
  pending: string[]
  roundTripMs: number
  countsTimedOut: boolean
  keyUsage: Record<string, number> | undefined
}

/**
 * What a probe is told by the database it watches (observability reads no model, key or migration itself): the
 * statements that count the values each key protects (one per encrypted column, each returning `key` and `count`),
 * the table of applied migrations, and the names of the library's migrations.
 *
 * @internal
 */
export interface ProbeSources {
  readonly keyUsageQueries: readonly string[]
  readonly migrationsTable: string
  readonly migrationNames: () => Promise<readonly string[]>
}

/** The SQLSTATE of a statement cancelled by `statement_timeout`. */
const QUERY_CANCELED = '57014'

function quoteTable(name: string): string {
  return name
    .split('.')
    .map((part) => `"${part.replace(/"/g, '""')}"`)
    .join('.')
}

/**
 * Runs one round of health queries on `client`: the round trip, then (when asked) exact counts and key usage under
 * the time left.
 *
 * @internal
 */
export async function probe(
  client: pg.Client,
  timeoutMs: number,
  tables: readonly string[],
  want: { readonly exactCounts: boolean; readonly keyUsage: boolean },
  sources: ProbeSources,
): Promise<ProbeResult> {
  const sent = performance.now()
  // One round trip: version, recovery, estimates, and the applied migrations when their table exists. Nothing is
  // set on the session: behind PgBouncer in transaction mode it would leak to other clients.
  const { rows } = await client.query<{
    server_version: string
    in_recovery: boolean
    estimates: Record<string, number> | null
    applied: string[] | null
  }>(
    `select current_setting('server_version') as server_version,
            pg_is_in_recovery() as in_recovery,
            (select json_object_agg(t.name, case when c.reltuples < 0 then pg_stat_get_live_tuples(c.oid)
                                                 else c.reltuples::bigint end)
               from unnest($1::text[]) as t(name)
               join pg_class c on c.oid = to_regclass(t.name)) as estimates,
            case when to_regclass($2) is not null then
              (select array_agg(x::text) from unnest(xpath('//name/text()',
                 query_to_xml(format('select name from %I', $2::text), false, false, ''))) as x)
            end as applied`,
    [tables, sources.migrationsTable],
  )
  const roundTripMs = performance.now() - sent
  const row = rows[0]!
  const applied = new Set(row.applied ?? [])
  const pending = (await sources.migrationNames()).filter((name) => !applied.has(name))
  const counted: Record<string, { rows: number; exact: boolean }> = {}
  for (const [name, rowsEstimate] of Object.entries(row.estimates ?? {})) {
    counted[name] = { rows: Number(rowsEstimate), exact: false }
  }
  let countsTimedOut = false
  let keyUsage: Record<string, number> | undefined
  if (want.exactCounts || want.keyUsage) {
    // The slow parts run in a read-only transaction with a transaction-local statement timeout: the time left.
    const left = Math.max(1, Math.floor(timeoutMs - (performance.now() - sent)))
    await client.query('begin read only')
    try {
      await client.query(`select set_config('statement_timeout', $1, true)`, [`${left}ms`])
      if (want.exactCounts) countsTimedOut = await countExactly(client, counted)
      if (want.keyUsage && !countsTimedOut) {
        keyUsage = await countKeyUsage(client, sources.keyUsageQueries)
        countsTimedOut = keyUsage === undefined
      }
    } finally {
      await client.query('rollback').catch(() => undefined)
    }
  }
  return {
    serverVersion: row.server_version,
    inRecovery: row.in_recovery,
    tables: counted,
    pending,
    roundTripMs,
    countsTimedOut,
    keyUsage,
  }
}

/**
 * Counts the rows of each table of `counted` exactly, in place, until the statement timeout; whether it came. Runs
 * inside the probe's transaction.
 */
async function countExactly(
  client: pg.Client,
  counted: Record<string, { rows: number; exact: boolean }>,
): Promise<boolean> {
  for (const name of Object.keys(counted)) {
    await client.query('savepoint count')
    try {
      const exact = await client.query<{ n: string }>(`select count(*)::text as n from ${quoteTable(name)}`)
      counted[name] = { rows: Number(exact.rows[0]!.n), exact: true }
    } catch (error) {
      if ((error as { code?: unknown }).code !== QUERY_CANCELED) throw error
      await client.query('rollback to savepoint count')
      return true
    }
  }
  return false
}

/**
 * The values each key protects, summed over the key-usage statements, or undefined when the statement timeout came
 * first. Runs inside the probe's transaction.
 */
async function countKeyUsage(
  client: pg.Client,
  queries: readonly string[],
): Promise<Record<string, number> | undefined> {
  const usage: Record<string, number> = {}
  try {
    for (const sql of queries) {
      const found = await client.query<{ key: string; count: string }>(sql)
      for (const u of found.rows) usage[u.key] = (usage[u.key] ?? 0) + Number(u.count)
    }
    return usage
  } catch (error) {
    if ((error as { code?: unknown }).code !== QUERY_CANCELED) throw error
    return undefined
  }
}
