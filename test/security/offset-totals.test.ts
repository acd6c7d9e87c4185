/**
 * Attack class: learning about other tenants' rows from the `total` of an offset page.
 *
 * The total of `list({ page: { number, size } })` used to be the planner's estimate (`EXPLAIN`) whenever the caller
 * did not ask for an exact count. The planner estimates from statistics over the whole table, so a user who owns
 * most of the table, filtering by a droplet name only another tenant uses (750 rows), got an empty page with
 * `total: 682`; other users got small non-zero totals for it, and their own totals moved when other tenants added
 * rows. The rule checked here: a total seen through a scope limited to its own rows depends on no row outside the
 * scope. It is a count of the scope's own rows: exact, or capped at 10,000 of them and said so (`totalCapped`).
 * Only scopes that see the whole table (admins, `system`) get estimates, and even those say 0 for an empty first
 * page, count what lies before an empty page past the end, and never claim fewer rows than their pages show.
 *
 * Every check runs with and without row-level security (`rls: true`), and the PgBouncer run repeats the file with
 * the library connected through PgBouncer in transaction mode.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Droplet, User, type Database, type Filter, type OffsetPage, type Scope } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

/** The name only the other tenant uses, on many of its rows. */
const THEIR_NAME = 'payroll-db'
const THEIR_ROWS = 750
const ALICE_ROWS = 5
/** A user who owns most of the table, none of it named THEIR_NAME: their estimate for THEIR_NAME was in the hundreds. */
const HEAVY_ROWS = 10_000

for (const rls of [false, true]) {
  describe(`offset totals never depend on rows outside an own-row scope (rls: ${rls})`, () => {
    let db: Database
    let cleanup: () => Promise<void>
    let alice: User
    let nobody: User
    let heavy: User
    let other: User
    let admin: User

    const makeUser = async (name: string, role = 'user'): Promise<User> =>
      await db
        .model(User)
        .query()
        .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })

    /** Unscoped bulk rows for one owner, straight in SQL (fast enough for thousands). */
    const insertRows = async (owner: User, count: number, name: string, status = 'active'): Promise<void> => {
      await db.knex.raw(
        `insert into droplets (id, user_id, name, region, size, status)
         select gen_random_uuid(), ?, ?, 'nyc3', 's-1vcpu-1gb', ? from generate_series(1, ?)`,
        [owner.id, name, status, count],
      )
    }

    beforeAll(async () => {
      const opened = await openTestDatabase({ rls })
      db = opened.db
      cleanup = opened.cleanup
      alice = await makeUser('alice')
      nobody = await makeUser('nobody')
      heavy = await makeUser('heavy')
      other = await makeUser('bigcorp')
      admin = await makeUser('root', 'admin')
      await insertRows(other, THEIR_ROWS, THEIR_NAME)
      await insertRows(other, 250, 'web', 'stopped')
      await insertRows(heavy, HEAVY_ROWS, 'node')
      for (let i = 1; i <= ALICE_ROWS; i++) await insertRows(alice, 1, `alice-${i}`, i <= 2 ? 'stopped' : 'active')
      // The leak needs statistics: without them the planner's guesses do not reflect other tenants' rows.
      await db.knex.raw('analyze droplets')
    })
    afterAll(async () => {
      await cleanup?.()
    })

    const totalsOf = (page: OffsetPage<Droplet>) => ({
      count: page.items.length,
      total: page.total,
      totalExact: page.totalExact,
      totalCapped: page.totalCapped,
      totalPages: page.totalPages,
      hasNextPage: page.hasNextPage,
    })

    const exactTotals = [undefined, false, true] as const
    const request = (number: number, size: number, exactTotal: boolean | undefined) =>
      exactTotal === undefined ? { number, size } : { number, size, exactTotal }

    it('gives a user filtering by another tenant’s droplet name an empty page with total 0', async () => {
      const seen: ({ user: string; exactTotal: boolean | undefined } & OffsetPage<Droplet>)[] = []
      for (const user of [heavy, alice, nobody]) {
        for (const exactTotal of exactTotals) {
          const page = await db
            .scope(user)
            .repo(Droplet)
            .list({ filter: { name: THEIR_NAME }, page: request(1, 20, exactTotal) })
          seen.push({ user: user.username, exactTotal, ...page })
        }
      }
      // All at once, so a failure shows every user's total.
      const empty = { items: [], page: 1, size: 20, total: 0, totalExact: true, totalCapped: false, totalPages: 0 }
      expect(seen).toEqual(seen.map(({ user, exactTotal }) => ({ user, exactTotal, ...empty, hasNextPage: false })))
    })

    it('gives a user with no rows total 0, whatever the filter', async () => {
      const repo = db.scope(nobody).repo(Droplet)
      for (const filter of [{}, { status: 'active' }, { name: { in: [THEIR_NAME, 'web'] } }] as Filter[]) {
        for (const number of [1, 2, 50]) {
          const page = await repo.list({ filter, page: { number, size: 10 } })
          expect(totalsOf(page), JSON.stringify({ filter, number })).toEqual({
            count: 0,
            total: 0,
            totalExact: true,
            totalCapped: false,
            totalPages: 0,
            hasNextPage: false,
          })
        }
      }
    })

    it('gives a user with a few rows exactly their count on every page, first, middle, last and past the end', async () => {
      const repo = db.scope(alice).repo(Droplet)
      for (const exactTotal of exactTotals) {
        for (const number of [1, 2, 3, 4, 10]) {
          const page = await repo.list({ sort: ['name'], page: request(number, 2, exactTotal) })
          const at = JSON.stringify({ number, exactTotal })
          expect(page.total, at).toBe(ALICE_ROWS)
          expect(page.totalExact, at).toBe(true)
          expect(page.totalPages, at).toBe(3)
          expect(
            page.items.map((d) => d.name),
            at,
          ).toEqual(['alice-1', 'alice-2', 'alice-3', 'alice-4', 'alice-5'].slice((number - 1) * 2, number * 2))
        }
        const stopped = await repo.list({ filter: { status: 'stopped' }, page: request(1, 1, exactTotal) })
        expect(totalsOf(stopped)).toEqual({
          count: 1,
          total: 2,
          totalExact: true,
          totalCapped: false,
          totalPages: 2,
          hasNextPage: true,
        })
      }
    })

    it('keeps a scoped total inside a scope transaction exact too', async () => {
      await db.scope(alice).transaction(async (tx: Scope) => {
        const page = await tx.repo(Droplet).list({ filter: { name: THEIR_NAME }, page: { number: 1 } })
        expect(totalsOf(page)).toMatchObject({ count: 0, total: 0, totalExact: true })
        const mine = await tx.repo(Droplet).list({ page: { number: 1, size: 2 } })
        expect(totalsOf(mine)).toMatchObject({ count: 2, total: ALICE_ROWS, totalExact: true })
      })
    })

    it('counts a user’s own rows up to 10,000, then says the total is capped; exactTotal counts them all', async () => {
      const repo = db.scope(heavy).repo(Droplet)
      const first = () => repo.list({ page: { number: 1, size: 20 } })
      // Exactly at the bound: still exact.
      expect(totalsOf(await first())).toEqual({
        count: 20,
        total: HEAVY_ROWS,
        totalExact: true,
        totalCapped: false,
        totalPages: 500,
        hasNextPage: true,
      })
      await insertRows(heavy, 1, 'node')
      // One row more: the bound, said to be capped; the filter counts the same way.
      expect(totalsOf(await first())).toEqual({
        count: 20,
        total: 10_000,
        totalExact: false,
        totalCapped: true,
        totalPages: 500,
        hasNextPage: true,
      })
      expect(totalsOf(await repo.list({ filter: { name: 'node' }, page: { number: 3, size: 100 } }))).toMatchObject({
        total: 10_000,
        totalCapped: true,
      })
      // Asked for, every row is counted.
      expect(totalsOf(await repo.list({ page: { number: 1, size: 20, exactTotal: true } }))).toMatchObject({
        total: HEAVY_ROWS + 1,
        totalExact: true,
        totalCapped: false,
      })
      // Deeper than the bound, the count reaches the row after the page: here that is every row.
      expect(totalsOf(await repo.list({ page: { number: 500, size: 20 } }))).toMatchObject({
        count: 20,
        total: HEAVY_ROWS + 1,
        totalExact: true,
        hasNextPage: true,
      })
      expect(totalsOf(await repo.list({ page: { number: 501, size: 20 } }))).toMatchObject({
        count: 1,
        total: HEAVY_ROWS + 1,
        totalExact: true,
        hasNextPage: false,
      })
      // The bound is the scope's own: other tenants' rows never count towards it.
      expect(
        totalsOf(
          await db
            .scope(alice)
            .repo(Droplet)
            .list({ page: { number: 1, size: 2 } }),
        ),
      ).toMatchObject({
        total: ALICE_ROWS,
        totalExact: true,
        totalCapped: false,
      })
    })

    it('shows a user the same totals whatever other tenants add, rename or delete', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const filters: Filter[] = [
        {},
        { name: THEIR_NAME },
        { name: 'alice-1' },
        { status: 'active' },
        { status: 'stopped' },
        { name: { in: [THEIR_NAME, 'alice-2'] } },
      ]
      const snapshot = async () => {
        const out: unknown[] = []
        for (const filter of filters) {
          for (const number of [1, 2, 9]) {
            for (const exactTotal of exactTotals) {
              out.push(totalsOf(await repo.list({ filter, page: request(number, 2, exactTotal) })))
            }
          }
        }
        return out
      }
      const before = await snapshot()
      // Another tenant adds thousands of rows, some with Alice's names and statuses, then renames and deletes some.
      await insertRows(other, 3_000, 'alice-1', 'stopped')
      await insertRows(other, 2_000, THEIR_NAME, 'active')
      await db.knex.raw(`update droplets set name = 'alice-2' where user_id = ? and name = 'web'`, [other.id])
      await db.knex.raw(
        `delete from droplets where user_id = ? and ctid in (select ctid from droplets
        where user_id = ? and name = ? limit 500)`,
        [other.id, other.id, THEIR_NAME],
      )
      await db.knex.raw('analyze droplets')
      expect(await snapshot()).toEqual(before)
      // Nor does a cold planner (no statistics) change them.
      await db.knex.raw(`delete from pg_statistic where starelid = 'droplets'::regclass`)
      expect(await snapshot()).toEqual(before)
    })

    it('lets admins and system scopes estimate, but never claim rows on an empty page or fewer than shown', async () => {
      const all = async () =>
        Number((await db.knex.raw<{ rows: { n: string }[] }>('select count(*) as n from droplets')).rows[0]!.n)
      // Statistics that are wrong both ways: 300 rows the planner believes in but that are gone, and 300 rows it
      // has not seen.
      await insertRows(other, 300, 'gone')
      await db.knex.raw('analyze droplets')
      await db.knex.raw(`delete from droplets where name = 'gone'`)
      await insertRows(other, 300, 'unseen')
      for (const scope of [db.scope(admin), db.system('offset totals test')]) {
        const repo = scope.repo(Droplet)
        for (const number of [1, 2, 1_000]) {
          const gone = await repo.list({ filter: { name: 'gone' }, page: { number, size: 1 } })
          expect(totalsOf(gone), `gone, page ${number}`).toEqual({
            count: 0,
            total: 0,
            totalExact: true,
            totalCapped: false,
            totalPages: 0,
            hasNextPage: false,
          })
        }
        const unseen = await repo.list({ filter: { name: 'unseen' }, page: { number: 3, size: 20 } })
        expect(unseen.items).toHaveLength(20)
        expect(unseen.total).toBeGreaterThanOrEqual(61)
        expect(unseen.totalPages).toBeGreaterThanOrEqual(4)
        // The whole table, with more rows than the page: the planner's estimate, said so, cheap.
        const whole = await repo.list({ page: { number: 1, size: 20 } })
        expect(whole).toMatchObject({ totalExact: false, totalCapped: false })
        expect(whole.total).toBeGreaterThanOrEqual(21)
        // Past the end, the total is what lies before the page: exact, and never more than its offset.
        const past = await repo.list({ filter: { name: 'unseen' }, page: { number: 100, size: 20 } })
        expect(totalsOf(past)).toEqual({
          count: 0,
          total: 300,
          totalExact: true,
          totalCapped: false,
          totalPages: 15,
          hasNextPage: false,
        })
        // The last page knows the total exactly, whatever the estimate.
        const last = await repo.list({ filter: { name: 'unseen' }, page: { number: 4, size: 99 } })
        expect(totalsOf(last)).toEqual({
          count: 3,
          total: 300,
          totalExact: true,
          totalCapped: false,
          totalPages: 4,
          hasNextPage: false,
        })
        // Asked for, the total is exact.
        const exact = await repo.list({ page: { number: 2, size: 20, exactTotal: true } })
        expect(totalsOf(exact)).toMatchObject({ count: 20, total: await all(), totalExact: true })
      }
    })
  })
}
