import { Droplet } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/**
 * The cost of the audit trail, for the user who owns 200,000 droplets:
 *
 * - one audited, scoped update through the repository (the change and its audit row in one statement) against the
 *   raw unaudited autocommit `UPDATE`;
 * - an audited `bulkUpdate` of 100,000 rows (one audit row per changed row, chunked, in one transaction) against the
 *   raw single statement that does the same (the update and its audit rows in one data-modifying CTE), and against
 *   the raw unaudited `UPDATE`.
 *
 * - an audited patch through the scoped query builder (one statement: lock, write, audit rows) against the raw
 *   statement doing the same;
 * - the audited update again with the hash chain on (run last: the chain cannot be turned off).
 *
 * Each round flips the status, so every round really changes every row and writes its audit rows.
 */
export async function auditBenchmarks({ db, pool, data }: BenchContext): Promise<Benchmark[]> {
  const { rows } = await pool.query<{ id: string }>(
    `select id::text as id from droplets where user_id = $1 order by created_at desc, id desc limit 100000`,
    [data.heavyUserId],
  )
  const all = rows.map((r) => r.id)
  const one = all[0]!
  const repo = () => db.scope({ id: data.heavyUserId, role: 'user' }, { requestId: 'bench' }).repo(Droplet)
  let flip = 0
  const status = () => (flip++ % 2 === 0 ? 'stopped' : 'active')
  const rawUpdate = async (ids: string[]) => {
    await pool.query(
      `update droplets set status = $1, updated_at = now() where id = any($2::uuid[]) and user_id = $3`,
      [status(), ids, data.heavyUserId],
    )
  }
  const rawAudited = async (ids: string[]) => {
    await pool.query(
      `with locked as (select id, status from droplets where id = any($2::uuid[]) and user_id = $3
                       order by id for no key update),
       changed as (update droplets set status = $1, updated_at = now() from locked
                   where droplets.id = locked.id returning droplets.id, droplets.status),
       audit as (insert into audit_logs (actor_id, actor_role, action, entity_type, entity_id, changes, metadata, created_at)
                 select $3, 'user', 'droplet.update', 'droplet', changed.id::text,
                        jsonb_build_object('status', jsonb_build_object('from', locked.status, 'to', changed.status)),
                        '{"requestId": "bench"}'::jsonb, clock_timestamp()
                 from changed join locked on locked.id = changed.id where locked.status is distinct from changed.status)
       select count(*) from changed`,
      [status(), ids, data.heavyUserId],
    )
  }
  return [
    defineBenchmark({
      name: 'audited scoped update of one droplet vs raw unaudited UPDATE',
      target: 1.5,
      setup: async () => {
        const before = await pool.query<{ n: string }>(
          `select count(*)::text as n from audit_logs where entity_id = $1`,
          [one],
        )
        const current = await pool.query<{ status: string }>(`select status from droplets where id = $1`, [one])
        await repo().update(one, { status: current.rows[0]!.status === 'active' ? 'stopped' : 'active' })
        const after = await pool.query<{ n: string }>(
          `select count(*)::text as n from audit_logs where entity_id = $1`,
          [one],
        )
        if (Number(after.rows[0]!.n) !== Number(before.rows[0]!.n) + 1) throw new Error('update wrote no audit row')
      },
      library: () => repo().update(one, { status: status() }),
      raw: () => rawUpdate([one]),
    }),
    defineBenchmark({
      name: 'audited bulkUpdate 100,000 rows vs raw UPDATE + audit CTE',
      target: 1.2,
      iterations: 5,
      warmup: 1,
      library: () => repo().bulkUpdate(all, { status: status() }),
      raw: () => rawAudited(all),
    }),
    defineBenchmark({
      name: 'audited bulkUpdate 100,000 rows vs raw unaudited UPDATE',
      iterations: 5,
      warmup: 1,
      library: () => repo().bulkUpdate(all, { status: status() }),
      raw: () => rawUpdate(all),
    }),
    defineBenchmark({
      name: 'audited query().patch of one droplet vs raw UPDATE + audit CTE',
      target: 1.5,
      library: async () => {
        await repo().query().patch({ status: status() }).where('id', one)
      },
      raw: () => rawAudited([one]),
    }),
    // Last: the chain stays on once enabled.
    defineBenchmark({
      name: 'audited scoped update, hash chain on, vs raw unaudited UPDATE',
      setup: async () => {
        await db.audit.enableHashChain()
      },
      library: () => repo().update(one, { status: status() }),
      raw: () => rawUpdate([one]),
    }),
  ]
}
