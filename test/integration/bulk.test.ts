import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Droplet, ForbiddenError, User, ValidationError, type BulkProgress, type Database } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

let db: Database
let cleanup: () => Promise<void>
let alice: User
let bob: User
let admin: User

async function droplets(owner: User, count: number, prefix: string): Promise<Droplet[]> {
  return db
    .scope(admin)
    .repo(Droplet)
    .bulkCreate(
      Array.from({ length: count }, (_, i) => ({
        userId: owner.id,
        name: `${prefix}-${i}`,
        region: 'nyc3',
        size: 's',
      })),
    )
}

async function snapshot(owner: User): Promise<string[]> {
  const { rows } = await db.knex.raw<{ rows: { row: string }[] }>(
    `select d::text as row from droplets d where user_id = ? order by id`,
    [owner.id],
  )
  return rows.map((r) => r.row)
}

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase())
  const make = (name: string, role = 'user') =>
    db
      .model(User)
      .query()
      .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash: 'x', role })
  alice = await make('alice')
  bob = await make('bob')
  admin = await make('root', 'admin')
})
afterAll(async () => {
  await cleanup()
})

describe('bulk operations', () => {
  it('bulkCreate makes a user’s rows their own, in chunks, and refuses rows for others', async () => {
    const progress: BulkProgress[] = []
    const made = await db
      .scope(alice)
      .repo(Droplet)
      .bulkCreate(
        Array.from({ length: 25 }, (_, i) => ({ name: `a-${i}`, region: 'nyc3', size: 's' })),
        { chunkSize: 10, onProgress: (p) => progress.push(p) },
      )
    expect(made).toHaveLength(25)
    expect(made.every((d) => d.userId === alice.id && d instanceof Droplet)).toBe(true)
    expect(progress.map((p) => [p.chunk, p.done, p.total])).toEqual([
      [1, 10, 25],
      [2, 20, 25],
      [3, 25, 25],
    ])
    await expect(
      db
        .scope(alice)
        .repo(Droplet)
        .bulkCreate([{ userId: bob.id, name: 'x', region: 'nyc3', size: 's' }]),
    ).rejects.toBeInstanceOf(ForbiddenError)
    await expect(
      db
        .scope(alice)
        .repo(Droplet)
        .bulkCreate([{ name: '', region: 'nyc3', size: 's' }]),
    ).rejects.toBeInstanceOf(ValidationError)
    expect(await db.scope(alice).repo(Droplet).count()).toBe(25)
  })

  it('bulkUpdate by ids changes the scope’s rows, reports the rest as not found, and never touches them', async () => {
    const mine = (await db.scope(alice).repo(Droplet).list({ limit: 100 })).map((d) => d.id)
    const theirs = (await droplets(bob, 5, 'b')).map((d) => d.id)
    const before = await snapshot(bob)
    const result = await db
      .scope(alice)
      .repo(Droplet)
      .bulkUpdate(
        [...mine.slice(0, 12), ...theirs, 'not-an-id', '01900000-0000-7000-8000-000000000000'],
        {
          status: 'stopped',
        },
        { chunkSize: 5 },
      )
    expect(result.updated).toEqual([...mine.slice(0, 12)].sort())
    expect(result.notFound.sort()).toEqual([...theirs, 'not-an-id', '01900000-0000-7000-8000-000000000000'].sort())
    expect(await snapshot(bob)).toEqual(before)
    expect(await db.scope(alice).repo(Droplet).count({ status: 'stopped' })).toBe(12)
  })

  it('bulkUpdate by filter changes every matching row of the scope, in chunks', async () => {
    const before = await snapshot(bob)
    const result = await db
      .scope(alice)
      .repo(Droplet)
      .bulkUpdate({ filter: { status: 'building' } }, { status: 'active' }, { chunkSize: 4 })
    expect(result).toEqual({ updated: 13 })
    expect(await db.scope(alice).repo(Droplet).count({ status: 'active' })).toBe(13)
    expect(await snapshot(bob)).toEqual(before)
  })

  it('bulkUpdateEach applies a patch per row and groups rows by shape', async () => {
    const mine = await db
      .scope(alice)
      .repo(Droplet)
      .list({ sort: ['name'], limit: 4 })
    const theirs = await db.scope(bob).repo(Droplet).list({ limit: 1 })
    const result = await db
      .scope(alice)
      .repo(Droplet)
      .bulkUpdateEach([
        { id: mine[0]!.id, status: 'error' },
        { id: mine[1]!.id, status: 'error', name: 'renamed-1' },
        { id: mine[2]!.id, name: 'renamed-2' },
        { id: mine[3]!.id, ipAddress: '2001:db8::9' },
        { id: theirs[0]!.id, status: 'error' },
      ])
    expect(result.updated).toEqual(mine.map((d) => d.id).sort())
    expect(result.notFound).toEqual([theirs[0]!.id])
    const after = await db
      .scope(alice)
      .repo(Droplet)
      .list({ filter: { id: { in: mine.map((d) => d.id) } }, sort: ['name'] })
    const byId = new Map(after.map((d) => [d.id, d]))
    expect(byId.get(mine[0]!.id)).toMatchObject({ status: 'error', name: mine[0]!.name })
    expect(byId.get(mine[1]!.id)).toMatchObject({ status: 'error', name: 'renamed-1' })
    expect(byId.get(mine[2]!.id)).toMatchObject({ name: 'renamed-2', status: mine[2]!.status })
    expect(byId.get(mine[3]!.id)?.ipAddress).toBe('2001:db8::9')
    expect(byId.get(mine[0]!.id)!.updatedAt.getTime()).toBeGreaterThan(mine[0]!.updatedAt.getTime())
    expect((await db.model(Droplet).query().findById(theirs[0]!.id))?.status).toBe(theirs[0]!.status)
  })

  it('is all or nothing by default, and refuses bad input before writing anything', async () => {
    const before = await snapshot(alice)
    const ids = (await db.scope(alice).repo(Droplet).list({ limit: 100 })).map((d) => d.id)
    const repo = db.scope(alice).repo(Droplet)
    await expect(repo.bulkUpdate(ids, { status: 'melting' } as never)).rejects.toBeInstanceOf(ValidationError)
    await expect(repo.bulkUpdate(ids, { userId: bob.id })).rejects.toBeInstanceOf(ForbiddenError)
    await expect(repo.bulkUpdate(ids, {})).rejects.toBeInstanceOf(ValidationError)
    await expect(repo.bulkUpdate(ids, { status: 'stopped' }, { chunkSize: 0 })).rejects.toBeInstanceOf(ValidationError)
    await expect(repo.bulkUpdate({ filter: { nope: 1 } } as never, { status: 'stopped' })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await expect(
      repo.bulkUpdateEach([
        { id: ids[0]!, status: 'stopped' },
        { id: ids[1]!, name: '' },
      ]),
    ).rejects.toBeInstanceOf(ValidationError)
    // A failure in a later chunk rolls back the earlier ones.
    await expect(
      repo.bulkUpdateEach(
        ids.slice(0, 6).map((id, i) => (i < 5 ? { id, name: `ok-${i}` } : { id, name: 'x'.repeat(300) })),
        { chunkSize: 2 },
      ),
    ).rejects.toBeInstanceOf(ValidationError)
    expect(await snapshot(alice)).toEqual(before)
  })

  it('updates a stream of ids chunk by chunk, counting what it did', async () => {
    const mine = (await db.scope(alice).repo(Droplet).list({ limit: 100 })).map((d) => d.id)
    const theirs = (await db.scope(bob).repo(Droplet).list({ limit: 3 })).map((d) => d.id)
    const before = await snapshot(bob)
    async function* ids(): AsyncGenerator<string> {
      // An async source, as a file or a database cursor would be.
      for (const id of [...mine.slice(0, 9), ...theirs, 'nope']) yield await Promise.resolve(id)
    }
    const progress: BulkProgress[] = []
    const result = await db
      .scope(alice)
      .repo(Droplet)
      .bulkUpdate(ids(), { region: 'ams3' }, { chunkSize: 4, onProgress: (p) => progress.push(p) })
    expect(result).toEqual({ updated: 9, notFound: 4 })
    expect(progress.map((p) => p.chunk)).toEqual([1, 2, 3, 4])
    expect(await db.scope(alice).repo(Droplet).count({ region: 'ams3' })).toBe(9)
    expect(await snapshot(bob)).toEqual(before)
    await expect(
      db.scope(alice).repo(Droplet).bulkUpdate(ids(), { region: 'ams3' }, { transaction: 'all' }),
    ).rejects.toBeInstanceOf(ValidationError)
  })

  it('does not deadlock when concurrent bulk updates overlap', async () => {
    const ids = (await droplets(alice, 400, 'lock')).map((d) => d.id)
    const shuffled = (seed: number) =>
      [...ids].sort((x, y) => ((x.charCodeAt(seed % 30) ^ seed) % 7) - ((y.charCodeAt(seed % 30) ^ seed) % 7))
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, w) =>
        db
          .scope(admin)
          .repo(Droplet)
          .bulkUpdate(
            shuffled(w + 3).slice(w * 20, w * 20 + 300),
            { status: w % 2 ? 'active' : 'stopped' },
            { chunkSize: 50 },
          ),
      ),
    )
    expect(results.every((r) => r.notFound.length === 0 && r.updated.length === 300)).toBe(true)
  })
})
