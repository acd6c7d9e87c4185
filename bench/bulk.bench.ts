import { Droplet } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

/** The droplets without their audit trail: what bulk operations cost by themselves (audit.bench.ts adds it). */
class UnauditedDroplet extends Droplet {
  static override audited = false
}

/**
 * Bulk status changes (unaudited: see audit.bench.ts for the audited figures) for the user who owns 200,000 droplets, through the scoped repository, against the raw single
 * statement doing the same (`UPDATE … WHERE id = ANY($1) AND user_id = $2`, and `UPDATE … FROM unnest(…)` for
 * per-row values), and against a per-row loop. Each round flips the status, so every round really writes.
 */
export async function bulkBenchmarks({ db, pool, data }: BenchContext): Promise<Benchmark[]> {
  const { rows } = await pool.query<{ id: string }>(
    `select id::text as id from droplets where user_id = $1 order by created_at desc, id desc limit 100000`,
    [data.heavyUserId],
  )
  const all = rows.map((r) => r.id)
  const repo = () => db.scope({ id: data.heavyUserId, role: 'user' }).repo(UnauditedDroplet)
  let flip = 0
  const status = () => (flip++ % 2 === 0 ? 'stopped' : 'active')
  const rawUpdate = async (ids: string[]) => {
    await pool.query(
      `update droplets set status = $1, updated_at = now() where id = any($2::uuid[]) and user_id = $3`,
      [status(), ids, data.heavyUserId],
    )
  }
  const rawEach = async (ids: string[]) => {
    const statuses = ids.map(() => status())
    await pool.query(
      `update droplets set status = input.status, updated_at = now()
       from unnest($1::uuid[], $2::text[]) as input(id, status)
       where droplets.id = input.id and droplets.user_id = $3`,
      [ids, statuses, data.heavyUserId],
    )
  }
  const perRow = async (ids: string[]) => {
    const client = await pool.connect()
    try {
      await client.query('begin')
      for (const id of ids) {
        await client.query(`update droplets set status = $1, updated_at = now() where id = $2 and user_id = $3`, [
          status(),
          id,
          data.heavyUserId,
        ])
      }
      await client.query('commit')
    } finally {
      client.release()
    }
  }
  const check = (n: number) => async () => {
    const result = await repo().bulkUpdate(all.slice(0, n), { status: 'stopped' })
    if (result.updated.length !== n || result.notFound.length !== 0) throw new Error('bulkUpdate missed rows')
  }
  // Every droplet id, streamed from the database in keyset pages of 10,000: the same source for both sides.
  async function* everyId(): AsyncGenerator<string> {
    let last = '00000000-0000-0000-0000-000000000000'
    for (;;) {
      const page = await pool.query<{ id: string }>(
        'select id::text as id from droplets where id > $1 order by id limit 10000',
        [last],
      )
      for (const row of page.rows) yield row.id
      if (page.rows.length < 10_000) return
      last = page.rows[page.rows.length - 1]!.id
    }
  }
  const system = () => db.system('bulk benchmark').repo(UnauditedDroplet)
  let peakRss = 0
  const streamed = async () => {
    const start = process.memoryUsage().rss
    peakRss = 0
    const result = await system().bulkUpdate(
      everyId(),
      { status: status() },
      { onProgress: () => (peakRss = Math.max(peakRss, process.memoryUsage().rss - start)) },
    )
    console.log(
      `  streamed bulkUpdate: ${result.updated.toLocaleString('en')} rows, ` +
        `peak RSS growth ${(peakRss / 1024 / 1024).toFixed(1)} MiB`,
    )
  }
  const rawStreamed = async () => {
    let batch: string[] = []
    const flush = async () => {
      await pool.query(`update droplets set status = $1, updated_at = now() where id = any($2::uuid[])`, [
        status(),
        batch,
      ])
      batch = []
    }
    for await (const id of everyId()) {
      batch.push(id)
      if (batch.length === 5_000) await flush()
    }
    if (batch.length > 0) await flush()
  }

  return [
    defineBenchmark({
      name: 'bulkUpdate 10,000 rows vs one raw UPDATE',
      target: 1.0,
      iterations: 20,
      warmup: 3,
      setup: check(10_000),
      library: () => repo().bulkUpdate(all.slice(0, 10_000), { status: status() }),
      raw: () => rawUpdate(all.slice(0, 10_000)),
    }),
    defineBenchmark({
      name: 'bulkUpdate 100,000 rows vs one raw UPDATE',
      target: 1.0,
      iterations: 5,
      warmup: 1,
      library: () => repo().bulkUpdate(all, { status: status() }),
      raw: () => rawUpdate(all),
    }),
    defineBenchmark({
      name: 'bulkUpdateEach 100,000 rows vs raw UPDATE FROM unnest',
      target: 1.2,
      iterations: 5,
      warmup: 1,
      library: () => repo().bulkUpdateEach(all.map((id) => ({ id, status: status() }))),
      raw: () => rawEach(all),
    }),
    defineBenchmark({
      name: 'bulkUpdate of a stream of 1,000,000 ids vs raw chunked UPDATEs',
      iterations: 1,
      warmup: 0,
      library: streamed,
      raw: rawStreamed,
    }),
    defineBenchmark({
      name: 'raw per-row loop of 2,000 rows vs bulkUpdate of them',
      iterations: 5,
      warmup: 1,
      library: () => perRow(all.slice(0, 2_000)),
      raw: () => repo().bulkUpdate(all.slice(0, 2_000), { status: status() }),
    }),
  ]
}
