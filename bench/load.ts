import type { Knex } from 'knex'

/** The size of the benchmark data set. */
export const BENCH_USERS = 10_000
export const BENCH_DROPLETS = 1_000_000
/** Droplets owned by the one heavy user (user 0): every fifth droplet. */
export const HEAVY_USER_DROPLETS = 200_000

const HEAVY_USER_EMAIL = 'bench-user-00000@bench.invalid'

/** What the benchmarks need to know about the loaded data. */
export interface BenchData {
  /** The id of the user who owns {@link HEAVY_USER_DROPLETS} droplets. */
  readonly heavyUserId: string
  readonly users: number
  readonly droplets: number
  /** False when the data was already there and loading was skipped. */
  readonly loaded: boolean
  /** Wall time of the load (or of the check, when skipped), in milliseconds. */
  readonly ms: number
}

/**
 * A SQL expression for a UUIDv7-shaped id: 48 bits of Unix milliseconds from `timestamp`, the version and variant
 * bits, and the rest from `random`, a 16-byte `bytea` expression (md5 of a seed, so every load makes the same ids).
 * Valid on PostgreSQL 13+ without extensions.
 */
function uuid7Sql(timestamp: string, random: string): string {
  const millis = `substring(int8send(floor(extract(epoch from ${timestamp}) * 1000)::bigint) from 3)`
  const withTime = `overlay(${random} placing ${millis} from 1 for 6)`
  const withVersion = `set_byte(${withTime}, 6, 112 | (get_byte(${random}, 6) & 15))`
  return `encode(set_byte(${withVersion}, 8, 128 | (get_byte(${random}, 8) & 63)), 'hex')::uuid`
}

/** When user `n` signed up: a few minutes apart in the month before the first droplet. */
const userCreatedAtSql = (n: string) => `(timestamptz '2022-12-01 00:00:00+00' + ${n} * interval '4 minutes')`
const userSeedSql = (n: string) => `decode(md5('bench-user-' || ${n}), 'hex')`

const INSERT_USERS = `
insert into users (id, email, username, password_hash, role, is_active, preferences, created_at, updated_at)
select ${uuid7Sql(userCreatedAtSql('n'), userSeedSql('n'))},
       'bench-user-' || lpad(n::text, 5, '0') || '@bench.invalid',
       'bench_' || lpad(n::text, 5, '0'),
       '!bench-no-login',
       case when n % 1000 = 999 then 'admin' else 'user' end,
       n % 50 <> 49,
       case when n % 3 = 0 then '{"theme": "dark"}'::jsonb else '{}'::jsonb end,
       ${userCreatedAtSql('n')},
       ${userCreatedAtSql('n')}
  from generate_series(0, ${BENCH_USERS - 1}) as n`

/*
 * Droplet i is created at group i / 10 (so ten droplets share each timestamp, microseconds included, and the heavy
 * user's droplets tie in pairs), about 16 minutes apart over three years. Rows are inserted in creation order (the
 * order generate_series yields them; an `order by` would only add a sort), owners interleaved the way a live table
 * has them: every fifth droplet belongs to user 0, the others go to users 1..9999 through a multiplicative hash.
 * Statuses follow a fixed mix (60% active); active and stopped droplets have an IPv4 or IPv6 address, the others
 * null. `offset 0` keeps the inner query from being flattened, so each md5 runs once per row, not once per use.
 */
const INSERT_DROPLETS = `
insert into droplets (id, user_id, name, region, size, status, ip_address, created_at, updated_at)
select ${uuid7Sql('created_at', 'droplet_seed')},
       ${uuid7Sql(userCreatedAtSql('owner'), 'owner_seed')},
       'bench-' || lpad(i::text, 7, '0'),
       (array['nyc1', 'nyc3', 'sfo3', 'ams3', 'fra1', 'lon1', 'sgp1', 'tor1', 'blr1', 'syd1'])[1 + (i * 7) % 10],
       (array['s-1vcpu-2gb', 's-2vcpu-4gb', 's-4vcpu-8gb', 'm-8vcpu-64gb'])[1 + (i * 3) % 4],
       status,
       case when status in ('active', 'stopped')
            then case when i % 7 = 0 then ('2001:db8::' || to_hex(i >> 16) || ':' || to_hex(i % 65536))::inet
                      else ('10.' || (i >> 16) % 256 || '.' || (i >> 8) % 256 || '.' || i % 256)::inet end
       end,
       created_at,
       created_at + (h % 1440) * interval '1 minute'
  from (
    select i, h, owner,
           decode(md5('bench-droplet-' || i), 'hex') as droplet_seed,
           ${userSeedSql('owner')} as owner_seed,
           case when h % 100 < 60 then 'active'
                when h % 100 < 75 then 'stopped'
                when h % 100 < 85 then 'deleted'
                when h % 100 < 90 then 'error'
                else 'building' end as status,
           timestamptz '2023-01-01 00:00:00+00'
             + (i / 10) * interval '946 seconds'
             + ((i / 10) * 7919 % 1000000) * interval '1 microsecond' as created_at
      from (
        select i,
               (i * 2654435761) % 4294967296 as h,
               case when i % 5 = 0 then 0 else 1 + ((i * 2246822519) % 4294967296) % ${BENCH_USERS - 1} end as owner
          from generate_series(0::bigint, ${BENCH_DROPLETS - 1}) as i
      ) as hashed
    offset 0
  ) as d`

async function count(knex: Knex, sql: string, bindings: readonly string[] = []): Promise<number> {
  const result = await knex.raw<{ rows: { count: string }[] }>(sql, [...bindings])
  return Number(result.rows[0]!.count)
}

interface Deferred {
  readonly drop: string
  readonly create: string
}

/*
 * The secondary indexes and foreign keys of droplets, read from the catalog (so this follows the migrations, whatever
 * they become) as the statements that drop and recreate them. Building an index once over sorted data, and checking
 * a foreign key with one join, is several times faster than maintaining them row by row over a million inserts.
 */
const DEFERRED = `
select format('drop index %I.%I', n.nspname, c.relname) as drop, pg_get_indexdef(i.indexrelid) as create
  from pg_index i
  join pg_class c on c.oid = i.indexrelid
  join pg_namespace n on n.oid = c.relnamespace
 where i.indrelid = 'droplets'::regclass and not i.indisprimary and not i.indisunique
 union all
select format('alter table droplets drop constraint %I', conname),
       format('alter table droplets add constraint %I %s', conname, pg_get_constraintdef(oid))
  from pg_constraint
 where conrelid = 'droplets'::regclass and contype = 'f'`

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/**
 * Fills a migrated database with the benchmark data set: {@link BENCH_USERS} users and {@link BENCH_DROPLETS}
 * droplets, {@link HEAVY_USER_DROPLETS} of them owned by one user, with two `insert … select … generate_series`
 * statements. It all happens in one transaction: the secondary indexes and the foreign key of droplets are dropped,
 * the rows inserted, the indexes and the foreign key recreated (so it is checked), and a failure leaves the schema
 * as it was. Then `vacuum analyze`: fresh statistics, and hint bits and the visibility map set, so the first
 * benchmark rounds do not pay for them. Skips the load when the data is already there.
 *
 * @example
 * ```ts
 * await db.migrate.latest()
 * const { heavyUserId } = await loadBenchData(db.knex)
 * ```
 */
export async function loadBenchData(
  knex: Knex,
  log: (line: string) => void = (line) => console.log(line),
): Promise<BenchData> {
  const started = performance.now()
  const existing = await knex<{ id: string; email: string }>('users').where('email', HEAVY_USER_EMAIL).first('id')
  if (existing !== undefined) {
    const users = await count(knex, `select count(*) from users where email like 'bench-user-%@bench.invalid'`)
    const heavy = await count(knex, 'select count(*) from droplets where user_id = ?', [existing.id])
    const droplets = await count(knex, `select count(*) from droplets where name like 'bench-%'`)
    if (users !== BENCH_USERS || heavy !== HEAVY_USER_DROPLETS || droplets !== BENCH_DROPLETS) {
      throw new Error(
        `The benchmark data in this database is incomplete (${users} users, ${droplets} droplets, ${heavy} for user 0). ` +
          'Point BENCH_DATABASE_URL at an empty database.',
      )
    }
    const ms = performance.now() - started
    log(`bench data: already loaded (${users} users, ${droplets} droplets), checked in ${seconds(ms)}`)
    return { heavyUserId: existing.id, users, droplets, loaded: false, ms }
  }

  log(
    `bench data: loading ${BENCH_USERS.toLocaleString('en')} users and ${BENCH_DROPLETS.toLocaleString('en')} droplets…`,
  )
  let insertedAt = 0
  let indexedAt = 0
  await knex.transaction(async (trx) => {
    // The data is regenerated at will, so a lost tail after a crash does not matter.
    await trx.raw('set local synchronous_commit = off')
    await trx.raw(`set local maintenance_work_mem = '256MB'`)
    const { rows: deferred } = await trx.raw<{ rows: Deferred[] }>(DEFERRED)
    for (const { drop } of deferred) await trx.raw(drop)
    await trx.raw(INSERT_USERS)
    await trx.raw(INSERT_DROPLETS)
    insertedAt = performance.now()
    for (const { create } of deferred) await trx.raw(create)
    indexedAt = performance.now()
  })
  await knex.raw('vacuum (analyze) users, droplets')
  const vacuumedAt = performance.now()
  const ms = vacuumedAt - started

  const heavyUser = await knex<{ id: string; email: string }>('users').where('email', HEAVY_USER_EMAIL).first('id')
  if (heavyUser === undefined) throw new Error('The benchmark users were not inserted.')
  const heavy = await count(knex, 'select count(*) from droplets where user_id = ?', [heavyUser.id])
  if (heavy !== HEAVY_USER_DROPLETS)
    throw new Error(`Expected ${HEAVY_USER_DROPLETS} droplets for user 0, found ${heavy}.`)
  log(
    `bench data: loaded in ${seconds(ms)} (inserts ${seconds(insertedAt - started)}, ` +
      `indexes and foreign key ${seconds(indexedAt - insertedAt)}, vacuum analyze ${seconds(vacuumedAt - indexedAt)})`,
  )
  return { heavyUserId: heavyUser.id, users: BENCH_USERS, droplets: BENCH_DROPLETS, loaded: true, ms }
}
