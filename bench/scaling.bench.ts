import { existsSync } from 'node:fs'
import { startPgBouncer, startRedis } from '../scripts/topology.js'
import { createDatabase, Droplet, type Database } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/**
 * Scale-out: a scoped `getById` served by the Redis cache and the same without a cache, each against the raw pg
 * query doing the same; and the scoped list through PgBouncer (transaction mode) against the same list direct.
 * Needs redis-server and pgbouncer (Debian's packages); without them these benchmarks are left out, saying so.
 */
export async function scalingBenchmarks({ db, pool, url, onClose }: BenchContext): Promise<Benchmark[]> {
  const benchmarks: Benchmark[] = []
  const { rows } = await pool.query<{ id: string; user_id: string }>(
    `select d.id, d.user_id from droplets d join users u on u.id = d.user_id where u.role = 'user' limit 1`,
  )
  const { id, user_id: owner } = rows[0]!
  const actor = { id: owner, role: 'user' }
  const rawGet = async () =>
    (
      await pool.query('select "droplets".* from "droplets" where "droplets"."user_id" = $1 and "droplets"."id" = $2', [
        owner,
        id,
      ])
    ).rows[0] as unknown

  if (existsSync(process.env.WINCLOUD_REDIS_SERVER ?? '/usr/bin/redis-server')) {
    const redis = await startRedis()
    onClose(() => redis.stop())
    const cached: Database = await createDatabase({
      connection: url,
      pool: { min: 1, max: 1 },
      cache: { redis: redis.url, ttlSeconds: 3_600 },
    })
    onClose(() => cached.close())
    benchmarks.push(
      defineBenchmark({
        name: 'scaling: getById from the Redis cache vs raw pg',
        target: 1.0,
        setup: async () => {
          await cached.scope(actor).repo(Droplet).getById(id)
        },
        library: () => cached.scope(actor).repo(Droplet).getById(id),
        raw: rawGet,
      }),
      defineBenchmark({
        name: 'scaling: getById without a cache vs raw pg',
        library: () => db.scope(actor).repo(Droplet).getById(id),
        raw: rawGet,
      }),
    )
  } else {
    console.log('  (redis-server not found: no cache benchmark)')
  }

  if (existsSync(process.env.WINCLOUD_PGBOUNCER ?? '/usr/sbin/pgbouncer')) {
    const server = new URL(url)
    const bouncer = await startPgBouncer({
      port: Number(server.port),
      user: decodeURIComponent(server.username),
      password: decodeURIComponent(server.password),
    })
    onClose(() => bouncer.stop())
    const through = new URL(bouncer.url)
    through.pathname = server.pathname
    const bounced: Database = await createDatabase({ connection: through.toString(), pool: { min: 1, max: 1 } })
    onClose(() => bounced.close())
    const options = { filter: { status: 'active' }, sort: ['-createdAt'], limit: 20 } as const
    benchmarks.push(
      defineBenchmark({
        name: 'scaling: scoped list through PgBouncer vs direct',
        target: 1.3,
        library: () => bounced.scope(actor).repo(Droplet).list(options),
        raw: () => db.scope(actor).repo(Droplet).list(options),
      }),
    )
  } else {
    console.log('  (pgbouncer not found: no PgBouncer benchmark)')
  }
  return benchmarks
}
