import { deepStrictEqual } from 'node:assert/strict'
import pg from 'pg'
import type { Knex } from 'knex'
import { missingPrograms, startTopology } from '../scripts/topology.js'
import { createDatabase, Droplet, User, type Database } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/**
 * What the reliability logic costs on the hot path: the scoped list of scoped-list.bench.ts through a database with
 * everything on (a host list with target_session_attrs, so every new connection looks for the writable host; the
 * dead-connection guard on every query; the lost-read retry; the idle ping) against the same list through a
 * database whose knex has the guard taken off again. Both sides are the library; the ratio is the price of the
 * logic. (The guard lives on the knex client's own properties and on each connection's `query`: deleting them
 * leaves knex's and pg's own methods.)
 */
export async function reliabilityBenchmarks({ pool, url, onClose }: BenchContext): Promise<Benchmark[]> {
  const { rows } = await pool.query<{ id: string }>(
    `select id from users where role = 'user' and is_active and id <> (select user_id from droplets group by user_id
     order by count(*) desc limit 1) order by id limit 1 offset 100`,
  )
  const actor = { id: rows[0]!.id, role: 'user' }
  const options = { filter: { status: 'active' }, sort: ['-createdAt'], limit: 20 } as const
  const target = new URL(url)
  const hostList = new URL(url)
  hostList.host = `${target.hostname}:${target.port}`
  hostList.searchParams.set('target_session_attrs', 'read-write')
  // The same server twice: the list is what makes the pool look for the writable host.
  const listed = hostList.toString().replace(`@${target.host}`, `@${target.host},${target.host}`)

  const guarded = await createDatabase({ connection: listed, pool: { min: 1, max: 1 } })
  const bare = await createDatabase({ connection: url, pool: { min: 1, max: 1, idleCheckMs: 0 } })
  onClose(() => guarded.close())
  onClose(() => bare.close())
  await unguard(bare.knex)

  return [
    defineBenchmark({
      name: 'scoped list with failover + dead-connection logic on vs off',
      target: 1.02,
      setup: async () => {
        const [on, off] = await Promise.all([
          guarded.scope(actor).repo(Droplet).list(options),
          bare.scope(actor).repo(Droplet).list(options),
        ])
        deepStrictEqual(
          on.map((d) => d.id),
          off.map((d) => d.id),
        )
        if ((await guarded.health()).primary.host !== target.host) throw new Error('the host list was not used')
      },
      library: async () => await guarded.scope(actor).repo(Droplet).list(options),
      raw: async () => await bare.scope(actor).repo(Droplet).list(options),
    }),
  ]
}

/** Takes the connection guard off a knex: its client's own methods, and the `query` of its open connections. */
async function unguard(knex: Knex): Promise<void> {
  const client = knex.client as Record<string, unknown> & {
    acquireConnection(): Promise<Record<string, unknown>>
    releaseConnection(connection: unknown): Promise<void>
  }
  for (const method of ['acquireRawConnection', 'validateConnection', 'runner', '_acquireOnlyConnection']) {
    delete client[method]
  }
  const connection = await client.acquireConnection()
  delete connection.query
  await client.releaseConnection(connection)
}

/**
 * Failover time on real servers (a primary and a streaming replica on loopback, as the failover test runs them):
 * from stopping the primary to the first successful write, with the replica promoted `promoteAfterMs` later, as an
 * HA manager would after its own detection delay. Null when the machine has no PostgreSQL server programs.
 */
export async function measureFailover(
  promoteAfterMs = 1_000,
): Promise<{ stopToWriteMs: number; promoteToWriteMs: number } | null> {
  if (missingPrograms({ pgbouncer: false, redis: false }).length > 0) return null
  const topology = await startTopology({ pgbouncer: false, redis: false })
  let db: Database | undefined
  try {
    const admin = new pg.Client({ connectionString: topology.primaryUrl })
    await admin.connect()
    await admin.query('create database app')
    await admin.end()
    db = await createDatabase({
      connection: topology.multiHostUrl('app'),
      failoverTimeoutMs: 30_000,
      pool: { max: 2, acquireTimeoutMs: 30_000 },
    })
    await db.migrate.latest()
    const owner = await db
      .system('bench')
      .repo(User)
      .create({ email: 'o@example.com', username: 'owner', passwordHash: 'x' })
    const write = (i: number) =>
      db!
        .scope(owner)
        .repo(Droplet)
        .create({ name: `f-${i}`, region: 'nyc3', size: 's' })
    await write(0)
    await topology.stopPrimary()
    const stopped = performance.now()
    const promoting = (async () => {
      await new Promise((resolve) => setTimeout(resolve, promoteAfterMs))
      const at = performance.now()
      await topology.promoteReplica()
      return at
    })()
    for (let i = 1; ; i++) {
      try {
        await write(i)
        break
      } catch {
        // Typed UnavailableError while no host takes writes; the next call waits for one.
      }
    }
    const written = performance.now()
    return { stopToWriteMs: written - stopped, promoteToWriteMs: written - (await promoting) }
  } finally {
    await db?.close()
    await topology.stop()
  }
}
