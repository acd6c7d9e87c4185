import { deepStrictEqual } from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { CursorCodec } from '../src/pagination/cursor-codec.js'
import { createDatabase, Droplet } from '../src/index.js'
import { defineBenchmark, type Benchmark } from './harness.js'
import type { BenchContext } from './model-load.bench.js'

const SIZE = 20

/**
 * Keyset pages of the user who owns 200,000 droplets, newest first, at depth 0 and at depth ~199,980: the library's
 * page (scoped repository, signed cursor) against the raw keyset SQL; and the raw OFFSET query at the same depth,
 * to show what keyset saves. The deep cursor is signed with a known secret, as a host's would be. And offset page 1
 * with its total for that user and for one with about 80 rows: a user's total counts only their own rows (capped at
 * 10,000), so the raw side runs the page and the same capped count.
 */
export async function paginationBenchmarks({ pool, url, data, onClose }: BenchContext): Promise<Benchmark[]> {
  const secret = randomBytes(32)
  const db = await createDatabase({
    connection: url,
    pool: { min: 1, max: 1 },
    pagination: { cursorSecrets: [secret.toString('base64')] },
  })
  onClose(() => db.close())
  const actor = { id: data.heavyUserId, role: 'user' }
  const repo = () => db.scope(actor).repo(Droplet)
  const depth = 199_980
  const { rows } = await pool.query<{ created: string; id: string }>(
    `select created_at::text as created, id::text as id from droplets where user_id = $1
     order by created_at desc, id desc offset $2 limit 1`,
    [data.heavyUserId, depth - 1],
  )
  const at = rows[0]!
  const cursor = new CursorCodec([secret]).encode(
    { model: 'Droplet', sort: '-createdAt', filter: '|[]', actor: `user:${actor.id}` },
    [at.created, at.id],
  )
  const keysetSql = `select "droplets".* from "droplets" where "droplets"."user_id" = $1
    and ("droplets"."created_at", "droplets"."id") < ($2, $3)
    order by "droplets"."created_at" desc, "droplets"."id" desc limit $4`
  const firstSql = `select "droplets".* from "droplets" where "droplets"."user_id" = $1
    order by "droplets"."created_at" desc, "droplets"."id" desc limit $2`
  const offsetSql = `${firstSql} offset $3`
  const rawDeep = async (): Promise<Record<string, unknown>[]> =>
    (await pool.query<Record<string, unknown>>(keysetSql, [actor.id, at.created, at.id, SIZE + 1])).rows.slice(0, SIZE)
  const rawFirst = async (): Promise<Record<string, unknown>[]> =>
    (await pool.query<Record<string, unknown>>(firstSql, [actor.id, SIZE + 1])).rows.slice(0, SIZE)
  const rawOffset = async (): Promise<Record<string, unknown>[]> =>
    (await pool.query<Record<string, unknown>>(offsetSql, [actor.id, SIZE, depth])).rows
  const libDeep = async () => (await repo().list({ sort: ['-createdAt'], page: { size: SIZE, after: cursor } })).items
  const libFirst = async () => (await repo().list({ sort: ['-createdAt'], page: { size: SIZE } })).items

  const same = async (library: () => Promise<Droplet[]>, raw: () => Promise<Record<string, unknown>[]>) => {
    const [models, plain] = await Promise.all([library(), raw()])
    deepStrictEqual(
      models.map((m) => m.id),
      plain.map((r) => r.id),
    )
  }
  // Offset pages carry a total, and a user's total counts only their own rows (capped at 10,000): the raw side runs
  // the same page and the same capped count.
  const typical = (
    await pool.query<{ id: string }>(`select user_id::text as id from droplets where user_id <> $1 limit 1`, [
      data.heavyUserId,
    ])
  ).rows[0]!.id
  const cappedCountSql = `select count(*)::int as n from (select 1 from "droplets" where "droplets"."user_id" = $1
    limit $2) counted`
  const rawOffsetPage = (userId: string) => async (): Promise<Record<string, unknown>[]> => {
    const page = (await pool.query<Record<string, unknown>>(firstSql, [userId, SIZE + 1])).rows
    if (page.length > SIZE) await pool.query(cappedCountSql, [userId, 10_001])
    return page.slice(0, SIZE)
  }
  const libOffsetPage = (userId: string) => async () =>
    (
      await db
        .scope({ id: userId, role: 'user' })
        .repo(Droplet)
        .list({ sort: ['-createdAt'], page: { number: 1, size: SIZE } })
    ).items
  return [
    defineBenchmark({
      name: 'offset page 1 with its total, user with ~80 rows, vs raw page + count',
      target: 1.6,
      setup: () => same(libOffsetPage(typical), rawOffsetPage(typical)),
      library: libOffsetPage(typical),
      raw: rawOffsetPage(typical),
    }),
    defineBenchmark({
      name: 'offset page 1 with its total, user with 200,000 rows, vs raw page + count capped at 10,000',
      target: 1.6,
      setup: () => same(libOffsetPage(actor.id), rawOffsetPage(actor.id)),
      library: libOffsetPage(actor.id),
      raw: rawOffsetPage(actor.id),
    }),
    defineBenchmark({
      name: 'keyset page 1 (20 rows) vs raw keyset SQL',
      target: 1.6,
      setup: () => same(libFirst, rawFirst),
      library: libFirst,
      raw: rawFirst,
    }),
    defineBenchmark({
      name: 'keyset page at depth 199,980 vs raw keyset SQL',
      target: 1.6,
      setup: () => same(libDeep, rawDeep),
      library: libDeep,
      raw: rawDeep,
    }),
    defineBenchmark({
      name: 'our keyset page at depth 199,980 vs our page 1',
      target: 1.2,
      library: libDeep,
      raw: libFirst,
    }),
    defineBenchmark({
      name: 'raw OFFSET 199,980 vs our keyset page there',
      library: rawOffset,
      raw: libDeep,
    }),
  ]
}
