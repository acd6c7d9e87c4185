import { deepStrictEqual } from 'node:assert/strict'
import { createDatabase, Droplet, type Database, type ScopedRepository } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/**
 * Listing the 20 newest active droplets of a normal user (about 80 droplets), through a scoped repository, against
 * the raw pg query doing the same: the same SQL text and parameters on a one-connection `pg.Pool`. With RLS on,
 * the library runs BEGIN, the scoped role and the actor settings as one message, then the query, then COMMIT;
 * the raw side is still the bare query, so the ratio shows everything RLS costs.
 */
export async function scopedListBenchmarks({ db, pool, url, onClose }: BenchContext): Promise<Benchmark[]> {
  const { rows } = await pool.query<{ id: string }>(
    `select id from users where role = 'user' and is_active and id <> (select user_id from droplets group by user_id
     order by count(*) desc limit 1) order by id limit 1 offset 100`,
  )
  const actor = { id: rows[0]!.id, role: 'user' }
  const options = { filter: { status: 'active' }, sort: ['-createdAt'], limit: 20 } as const
  const sql =
    'select "droplets".* from "droplets" where "droplets"."user_id" = $1 and "droplets"."status" = $2 ' +
    'order by "droplets"."created_at" desc, "droplets"."id" desc limit $3'
  const values = [actor.id, 'active', 20]
  const raw = async () => (await pool.query(sql, values)).rows as Record<string, unknown>[]

  const rlsDb: Database = await createDatabase({ connection: url, pool: { min: 1, max: 1 }, rls: true })
  onClose(() => rlsDb.close())
  await rlsDb.migrate.latest()

  const benchmark = (name: string, target: number, repo: () => ScopedRepository<Droplet>) =>
    defineBenchmark({
      name,
      target,
      setup: async () => {
        const [models, plain] = await Promise.all([repo().list(options), raw()])
        if (models.length === 0) throw new Error('the benchmark user has no active droplets')
        deepStrictEqual(
          models.map((m) => [m.id, m.status, m.createdAt.getTime()]),
          plain.map((r) => [r.id, r.status, (r.created_at as Date).getTime()]),
        )
      },
      // A scope per call, as a host makes one per request.
      library: async () => await repo().list(options),
      raw,
    })

  return [
    benchmark('scoped list, 20 newest active (RLS off)', 1.6, () => db.scope(actor).repo(Droplet)),
    benchmark('scoped list, 20 newest active (RLS on)', 2.0, () => rlsDb.scope(actor).repo(Droplet)),
  ]
}
