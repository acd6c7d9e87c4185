import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  BaseModel,
  ConfigError,
  DecryptionError,
  Droplet,
  User,
  ValidationError,
  blindIndex,
  type Database,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'

const KEYS = { k1: randomBytes(32).toString('base64'), k2: randomBytes(32).toString('base64') }
const BLIND = randomBytes(32).toString('base64')

for (const rls of [false, true]) {
  describe(`encrypted model columns (rls: ${rls})`, () => {
    let db: Database
    let cleanup: () => Promise<void>
    let alice: User

    beforeAll(async () => {
      ;({ db, cleanup } = await openTestDatabase({
        rls,
        encryption: { keys: KEYS, current: 'k1', blindIndexKey: BLIND },
      }))
      alice = await db
        .system('test')
        .repo(User)
        .create({ email: 'alice@example.com', username: 'alice', passwordHash: 'x', apiToken: 'tok-alice-123' })
    })
    afterAll(async () => {
      await cleanup()
    })

    const stored = async (id: string): Promise<string | null> =>
      ((await db.knex('droplets').where('id', id).first()) as { admin_password_ciphertext: string | null })
        .admin_password_ciphertext

    it('stores an envelope, never the plaintext, and reads it back through the repository', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const created = await repo.create({ name: 'web-1', region: 'nyc3', size: 's', adminPassword: 'Pa55-one!' })
      const text = await stored(created.id)
      expect(text).toMatch(/^v1\.k1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/)
      const { rows } = await db.knex.raw<{ rows: { row: string }[] }>(
        `select droplets::text as row from droplets where id = ?`,
        [created.id],
      )
      expect(rows[0]!.row).not.toContain('Pa55-one!')
      const loaded = await repo.getById(created.id)
      expect(loaded.adminPassword).toBe('Pa55-one!')
      // Never part of the JSON of a row, nor of its inspection.
      expect(JSON.stringify(loaded)).not.toContain('Pa55-one!')
      expect(Object.keys(loaded.toJSON())).not.toContain('adminPassword')
      expect(inspect(loaded)).not.toContain('Pa55-one!')
      // A droplet without one reads null.
      const plain = await repo.create({ name: 'web-2', region: 'nyc3', size: 's' })
      expect(await stored(plain.id)).toBeNull()
      expect((await repo.getById(plain.id)).adminPassword).toBeNull()
    })

    it('encrypts on update, bulkCreate and bulkUpdateEach, each value bound to its own row', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const [a, b] = await repo.bulkCreate([
        { name: 'bulk-a', region: 'nyc3', size: 's', adminPassword: 'same-secret' },
        { name: 'bulk-b', region: 'nyc3', size: 's', adminPassword: 'same-secret' },
      ])
      // The same secret on two rows gives two different envelopes.
      expect(await stored(a!.id)).not.toBe(await stored(b!.id))
      await repo.update(a!.id, { adminPassword: 'changed-a' })
      expect((await repo.getById(a!.id)).adminPassword).toBe('changed-a')
      await repo.bulkUpdateEach([
        { id: a!.id, adminPassword: 'each-a' },
        { id: b!.id, adminPassword: 'each-b', status: 'stopped' },
      ])
      expect((await repo.getById(a!.id)).adminPassword).toBe('each-a')
      const bAfter = await repo.getById(b!.id)
      expect([bAfter.adminPassword, bAfter.status]).toEqual(['each-b', 'stopped'])
      await repo.update(a!.id, { adminPassword: null })
      expect(await stored(a!.id)).toBeNull()
      expect((await repo.getById(a!.id)).adminPassword).toBeNull()
    })

    it('encrypts through objection’s insert too, and refuses its query-wide patch of an encrypted field', async () => {
      const inserted = await db
        .model(Droplet)
        .query()
        .insert({
          userId: alice.id,
          name: 'objection',
          region: 'nyc3',
          size: 's',
          adminPassword: 'via-objection',
        } as never)
      expect(await stored(inserted.id)).toMatch(/^v1\.k1\./)
      expect((await db.model(Droplet).query().findById(inserted.id))!.adminPassword).toBe('via-objection')
      const before = await stored(inserted.id)
      await expect(
        db
          .model(Droplet)
          .query()
          .findById(inserted.id)
          .patch({ adminPassword: 'nope' } as never),
      ).rejects.toBeInstanceOf(ValidationError)
      expect(await stored(inserted.id)).toBe(before)
    })

    it('decrypts eagerly loaded rows too', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const created = await repo.create({ name: 'eager', region: 'nyc3', size: 's', adminPassword: 'eager-secret' })
      const owner = await db.model(User).query().findById(alice.id).withGraphFetched('droplets')
      expect(owner!.droplets!.find((d) => d.id === created.id)!.adminPassword).toBe('eager-secret')
      expect(owner!.apiToken).toBe('tok-alice-123')
    })

    it('bulkUpdate by ids encrypts one patch per row, each value bound to its own row', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const [a, b] = await repo.bulkCreate([
        { name: 'bulk-enc-a', region: 'nyc3', size: 's', adminPassword: 'old-a' },
        { name: 'bulk-enc-b', region: 'nyc3', size: 's' },
      ])
      const missing = '01a21233-1405-73d4-acaf-6da954af9e1d'
      const result = await repo.bulkUpdate([b!.id, a!.id, missing, 'not-a-uuid'], {
        adminPassword: 'rotated-together',
        status: 'stopped',
      })
      expect(result.updated).toEqual([a!.id, b!.id].sort())
      expect([...result.notFound].sort()).toEqual([missing, 'not-a-uuid'].sort())
      // One plaintext, two envelopes: each bound to its row (moving one to the other row would not decrypt).
      const [envelopeA, envelopeB] = [await stored(a!.id), await stored(b!.id)]
      expect(envelopeA).toMatch(/^v1\./)
      expect(envelopeB).toMatch(/^v1\./)
      expect(envelopeA).not.toBe(envelopeB)
      for (const id of [a!.id, b!.id]) {
        const row = await repo.getById(id)
        expect([row.adminPassword, row.status]).toEqual(['rotated-together', 'stopped'])
      }
      // A stream of ids, chunk by chunk, the same way.
      async function* ids(): AsyncIterable<string> {
        for (const id of [a!.id, b!.id]) yield await Promise.resolve(id)
      }
      expect(await repo.bulkUpdate(ids(), { adminPassword: 'streamed' }, { chunkSize: 1 })).toEqual({
        updated: 2,
        notFound: 0,
      })
      expect((await repo.getById(b!.id)).adminPassword).toBe('streamed')
      // Another user's droplet is not found and keeps its value.
      const bob = await db
        .system('test')
        .repo(User)
        .create({ email: 'bob-enc@example.com', username: 'bob_enc', passwordHash: 'x' })
      const theirs = await db
        .scope(bob)
        .repo(Droplet)
        .create({ name: 'theirs', region: 'nyc3', size: 's', adminPassword: 'bobs' })
      expect(await repo.bulkUpdate([theirs.id], { adminPassword: 'taken' })).toEqual({
        updated: [],
        notFound: [theirs.id],
      })
      expect((await db.scope(bob).repo(Droplet).getById(theirs.id)).adminPassword).toBe('bobs')
    })

    it('refuses one patch of an encrypted field by filter, saying to update by ids, and changes nothing', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const created = await repo.create({ name: 'many', region: 'nyc3', size: 's', adminPassword: 'keep-me' })
      const before = await stored(created.id)
      const byFilter = repo.bulkUpdate({ filter: { name: 'many' } }, { adminPassword: 'nope' })
      await expect(byFilter).rejects.toBeInstanceOf(ValidationError)
      await expect(byFilter).rejects.toThrow(/Droplet\.adminPassword is encrypted for each row: bulkUpdate it by ids/)
      // A bad encrypted value is refused before anything is written, by ids too.
      await expect(repo.bulkUpdate([created.id], { adminPassword: '' })).rejects.toBeInstanceOf(ValidationError)
      expect(await stored(created.id)).toBe(before)
    })

    it('fails with DecryptionError when a ciphertext is moved to another row', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const from = await repo.create({ name: 'from', region: 'nyc3', size: 's', adminPassword: 'mine' })
      const to = await repo.create({ name: 'to', region: 'nyc3', size: 's', adminPassword: 'theirs' })
      await db
        .knex('droplets')
        .where('id', to.id)
        .update({ admin_password_ciphertext: await stored(from.id) })
      const moved = await repo.getById(to.id)
      // The row loads; only reading the secret fails, and says nothing more.
      expect(moved.name).toBe('to')
      let error: unknown
      try {
        void moved.adminPassword
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(DecryptionError)
      expect((error as Error).message).toBe('Decryption failed')
      expect(JSON.stringify(error)).not.toContain('mine')
    })

    it('keeps the blind index of a user’s API token, and never the token, in the row', async () => {
      const row = (await db.knex('users').where('id', alice.id).first()) as Record<string, unknown>
      expect(row.api_token_ciphertext).toMatch(/^v1\.k1\./)
      expect(row.api_token_bidx).toBe(
        blindIndex(
          (await import('../../src/crypto/keyring.js')).Keyring.from({
            keys: KEYS,
            current: 'k1',
            blindIndexKey: BLIND,
          }),
          'users',
          'api_token_bidx',
          'tok-alice-123',
        ),
      )
      expect(JSON.stringify(row)).not.toContain('tok-alice-123')
      // A user cannot set their own token (restricted), an admin can.
      await expect(db.scope(alice).repo(User).update(alice.id, { apiToken: 'mine-now' })).rejects.toThrow()
      const admin = { id: alice.id, role: 'admin' }
      const updated = await db.scope(admin).repo(User).update(alice.id, { apiToken: 'tok-alice-456' })
      expect(updated.apiToken).toBe('tok-alice-456')
    })

    it('filters an encrypted property by equality through its blind index, and refuses every other operator', async () => {
      const admin = db.scope({ id: alice.id, role: 'admin' })
      const other = await db
        .system('test')
        .repo(User)
        .create({ email: 'carol@example.com', username: 'carol', passwordHash: 'x', apiToken: 'tok-carol-789' })
      const token = (await db.scope(admin.actor!).repo(User).getById(alice.id)).apiToken as string
      const found = await admin.repo(User).list({ filter: { apiToken: token } })
      expect(found.map((u) => u.id)).toEqual([alice.id])
      expect((await admin.repo(User).list({ filter: { apiToken: { eq: 'tok-carol-789' } } })).map((u) => u.id)).toEqual(
        [other.id],
      )
      expect(await admin.repo(User).count({ apiToken: 'no-such-token' })).toBe(0)
      expect(await admin.repo(User).count({ or: [{ apiToken: token }, { apiToken: 'tok-carol-789' }] })).toBe(2)
      // The scope still applies: alice as a user finds only herself, even with carol's token.
      expect(await db.scope(alice).repo(User).count({ apiToken: 'tok-carol-789' })).toBe(0)
      for (const filter of [
        { apiToken: { like: { startsWith: 'tok' } } },
        { apiToken: { gt: 'a' } },
        { apiToken: { in: [token] } },
        { apiToken: { ne: token } },
        { apiToken: { eq: token, ne: 'x' } },
        { apiToken: 42 },
        { apiToken: [token] },
        { adminPassword: 'x' },
      ]) {
        await expect(admin.repo(User).list({ filter: filter as never })).rejects.toBeInstanceOf(ValidationError)
      }
      await expect(
        db
          .scope(alice)
          .repo(Droplet)
          // adminPassword has no blind index: the types refuse it, and so does the run time.
          .list({ filter: { adminPassword: 'Pa55-one!' } as never }),
      ).rejects.toBeInstanceOf(ValidationError)
    })

    it('records encrypted fields in audit rows as redacted, never their values', async () => {
      const repo = db.scope(alice).repo(Droplet)
      const created = await repo.create({ name: 'audited', region: 'nyc3', size: 's', adminPassword: 'audit-secret-1' })
      await repo.update(created.id, { adminPassword: 'audit-secret-2' })
      await repo.delete(created.id)
      const { rows } = await db.knex.raw<{ rows: { action: string; changes: Record<string, unknown> }[] }>(
        `select action, changes from audit_logs where entity_id = ? order by created_at`,
        [created.id],
      )
      expect(rows.map((r) => [r.action, r.changes.adminPassword])).toEqual([
        ['droplet.create', { redacted: true }],
        ['droplet.update', { redacted: true }],
        ['droplet.delete', { redacted: true }],
      ])
      const all = await db.knex.raw<{ rows: { text: string }[] }>(
        `select string_agg(audit_logs::text, '') as text from audit_logs`,
      )
      for (const secret of ['audit-secret-1', 'audit-secret-2', 'tok-alice-123', 'tok-alice-456']) {
        expect(all.rows[0]!.text).not.toContain(secret)
      }
    })

    it('reads values written under an older key after the current key changes', async () => {
      const created = await db
        .scope(alice)
        .repo(Droplet)
        .create({ name: 'old-key', region: 'nyc3', size: 's', adminPassword: 'k1-secret' })
      const { db: rotated, cleanup: close } = await reopen(db, { keys: KEYS, current: 'k2', blindIndexKey: BLIND })
      try {
        const again = await rotated.scope(alice).repo(Droplet).getById(created.id)
        expect(again.adminPassword).toBe('k1-secret')
        await rotated.scope(alice).repo(Droplet).update(created.id, { adminPassword: 'k2-secret' })
        expect(await stored(created.id)).toMatch(/^v1\.k2\./)
      } finally {
        await close()
      }
    })
  })
}

/** A second Database on the same database, with other encryption settings. */
async function reopen(
  db: Database,
  encryption: {
    keys: Record<string, string>
    current: string
    blindIndexKey: string
    previousBlindIndexKeys?: string[]
  },
): Promise<{ db: Database; cleanup: () => Promise<void> }> {
  const { createDatabase } = await import('../../src/index.js')
  const connection = (db.knex.client as { config: { connection: { connectionString: string } } }).config.connection
    .connectionString
  const other = await createDatabase({ connection, encryption })
  return { db: other, cleanup: () => other.close() }
}

describe('encrypted model columns without encryption keys', () => {
  let db: Database
  let cleanup: () => Promise<void>
  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase())
  })
  afterAll(async () => {
    await cleanup()
  })

  it('refuses to write an encrypted field with a ConfigError, and still works without one', async () => {
    const user = await db
      .system('t')
      .repo(User)
      .create({ email: 'bob@example.com', username: 'bobby', passwordHash: 'x' })
    await expect(
      db.scope(user).repo(Droplet).create({ name: 'w', region: 'nyc3', size: 's', adminPassword: 'x' }),
    ).rejects.toBeInstanceOf(ConfigError)
    const plain = await db.scope(user).repo(Droplet).create({ name: 'w', region: 'nyc3', size: 's' })
    expect((await db.scope(user).repo(Droplet).getById(plain.id)).adminPassword).toBeNull()
    await expect(
      db
        .scope(user)
        .repo(User)
        .list({ filter: { apiToken: 'x' } }),
    ).rejects.toBeInstanceOf(ConfigError)
  })
})

describe('key rotation', () => {
  it('moves every value to the current key, Fernet tokens included, resumably, and counts what each key protects', async () => {
    const { fernetEncrypt, fernetKey } = await import('../../src/index.js')
    const fernet = randomBytes(32)
    const fernetText = `${fernet.toString('base64url')}=`
    const old = { keys: { k1: KEYS.k1 }, current: 'k1', blindIndexKey: BLIND, legacyFernetKeys: [fernetText] }
    const { db, cleanup } = await openTestDatabase({ encryption: old })
    try {
      const user = await db
        .system('t')
        .repo(User)
        .create({ email: 'dave@example.com', username: 'dave', passwordHash: 'x', apiToken: 'tok-dave' })
      const repo = db.scope(user).repo(Droplet)
      const made = await repo.bulkCreate(
        Array.from({ length: 7 }, (_, i) => ({ name: `d${i}`, region: 'nyc3', size: 's', adminPassword: `pw-${i}` })),
      )
      // One value as the Python backend wrote it: a Fernet token, readable before any rotation.
      const legacy = made[6]!
      await db
        .knex('droplets')
        .where('id', legacy.id)
        .update({ admin_password_ciphertext: fernetEncrypt(fernetKey(fernetText)!, Buffer.from('from-python')) })
      expect((await repo.getById(legacy.id)).adminPassword).toBe('from-python')
      // The user's API token as Python wrote it too: a Fernet token, and no blind index (Python never made one).
      await db
        .knex('users')
        .where('id', user.id)
        .update({
          api_token_ciphertext: fernetEncrypt(fernetKey(fernetText)!, Buffer.from('tok-python')),
          api_token_bidx: null,
        })
      expect((await db.crypto.keyUsage()).total).toEqual({ k1: 6, fernet: 2 })
      // The import is done: the inventory records where each token is, so that rotation converts them there only.
      expect(await db.crypto.inventoryLegacyTokens()).toMatchObject({ recorded: 2, unreadable: 0 })

      const { db: next, cleanup: close } = await reopen(db, {
        keys: { k1: KEYS.k1, k2: KEYS.k2 },
        current: 'k2',
        blindIndexKey: BLIND,
        legacyFernetKeys: [fernetText],
      } as never)
      try {
        // A crash in the second batch (users' one token first, then droplets two at a time): the first batch stays
        // done, the second rolls back; running it again finishes the job.
        await expect(
          next.crypto.rotate({
            batchSize: 2,
            onProgress: (p) => {
              if (p.rotated > 2) throw new Error('crash')
            },
          }),
        ).rejects.toThrow('crash')
        const midway = (await next.crypto.keyUsage()).total
        expect(midway.k2).toBe(1)
        expect(midway.k1! + (midway.fernet ?? 0)).toBe(7)
        const progress: number[] = []
        const { rotated } = await next.crypto.rotate({ batchSize: 2, onProgress: (p) => progress.push(p.rotated) })
        expect(rotated).toBe(7)
        expect(progress.at(-1)).toBe(7)
        expect((await next.crypto.keyUsage()).total).toEqual({ k2: 8 })
        // Everything still reads, the legacy value included, and the Python key is no longer needed.
        for (const [i, d] of made.entries()) {
          expect((await next.scope(user).repo(Droplet).getById(d.id)).adminPassword).toBe(
            i === 6 ? 'from-python' : `pw-${i}`,
          )
        }
        expect((await next.model(User).query().findById(user.id))!.apiToken).toBe('tok-python')
        // Rotation wrote the token's blind index: it can be looked up now.
        const found = await next
          .system('t')
          .repo(User)
          .list({ filter: { apiToken: 'tok-python' } })
        expect(found.map((u) => u.id)).toEqual([user.id])
        // Running it again does nothing; one audit row sums each completed run up.
        expect(await next.crypto.rotate()).toEqual({ rotated: 0, reindexed: 0, refused: 0, refusals: [] })
        const { rows } = await next.knex.raw<{ rows: { metadata: { rotated: number } }[] }>(
          `select metadata from audit_logs where action = 'crypto.rotate' order by created_at`,
        )
        expect(rows.map((r) => r.metadata.rotated)).toEqual([7, 0])
      } finally {
        await close()
      }
    } finally {
      await cleanup()
    }
  })
})

/** A host's own model with encrypted properties, as docs/encryption.md declares one. */
class Server extends BaseModel {
  static override tableName = 'servers'
  static override encrypted = {
    rootPassword: {},
    licenseKey: { blindIndex: { normalize: 'trim' as const, bytes: 16 } },
  }
  static override jsonSchema = {
    type: 'object',
    properties: {
      id: { type: 'string' },
      rootPassword: { type: ['string', 'null'] },
      licenseKey: { type: ['string', 'null'] },
    },
  }
  declare id: string
  declare rootPassword: string | null | undefined
  declare licenseKey: string | null | undefined
}

describe('host models, blind-index key rotation and encrypting a plaintext column', () => {
  let db: Database
  let cleanup: () => Promise<void>
  const NEW_BLIND = randomBytes(32).toString('base64')

  beforeAll(async () => {
    ;({ db, cleanup } = await openTestDatabase({ encryption: { keys: KEYS, current: 'k1', blindIndexKey: BLIND } }))
    await db.knex.raw(`create table servers (
      id uuid primary key default gen_random_uuid(),
      legacy_root_password text,
      legacy_license text,
      root_password_ciphertext text,
      license_key_ciphertext text,
      license_key_bidx text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`)
  })
  afterAll(async () => {
    await cleanup()
  })

  const servers = (): Promise<Record<string, string | null>[]> =>
    db.knex('servers').select('*').orderBy('id') as Promise<Record<string, string | null>[]>

  it('encrypts an existing plaintext column in place, in batches, resumably, and empties it', async () => {
    const ids: string[] = []
    for (let i = 0; i < 7; i++) {
      const [row] = await db
        .knex('servers')
        .insert({
          // Ids in insertion order, so the batches (by id) are known: rows 0-2, 3-5, 6.
          id: `00000000-0000-4000-8000-00000000000${i}`,
          legacy_root_password: `root-${i}`,
          legacy_license: i === 3 ? null : ` LIC-${i} `,
        })
        .returning<{ id: string }[]>('id')
      ids.push(row!.id)
    }
    // One row was written through the model since the encrypted property went live: its value wins.
    await db
      .model(Server)
      .query()
      .insert({ id: ids[5], rootPassword: 'newer' })
      .onConflict('id')
      .merge(['root_password_ciphertext'])
    // A crash in the second batch: the first is done and emptied, the rest untouched.
    await expect(
      db.crypto.encryptColumn(Server, 'rootPassword', {
        from: 'legacy_root_password',
        batchSize: 3,
        onProgress: (p) => {
          if (p.encrypted > 3) throw new Error('crash')
        },
      }),
    ).rejects.toThrow('crash')
    expect((await servers()).filter((r) => r.legacy_root_password !== null)).toHaveLength(4)
    const progress: number[] = []
    const { encrypted } = await db.crypto.encryptColumn(Server, 'rootPassword', {
      from: 'legacy_root_password',
      batchSize: 3,
      onProgress: (p) => progress.push(p.encrypted),
    })
    expect(encrypted).toBe(3) // 7 rows: 3 before the crash, the newer one kept, 3 now
    expect(progress.at(-1)).toBe(3)
    const rows = await servers()
    expect(rows.every((r) => r.legacy_root_password === null)).toBe(true)
    expect(rows.every((r) => r.root_password_ciphertext?.startsWith('v1.k1.'))).toBe(true)
    for (const [i, id] of ids.entries()) {
      const server = await db.model(Server).query().findById(id)
      expect(server!.rootPassword).toBe(i === 5 ? 'newer' : `root-${i}`)
    }
    // With a blind index: lookups find the values it moved.
    await db.crypto.encryptColumn(Server, 'licenseKey', { from: 'legacy_license' })
    const found = await db
      .system('t')
      .repo(Server)
      .list({ filter: { licenseKey: 'LIC-4' } })
    expect(found.map((s) => s.id)).toEqual([ids[4]])
    expect((await db.model(Server).query().findById(ids[3]!))!.licenseKey).toBeNull()
    // Nothing left: a run that does nothing; one audit row per completed run, without values.
    expect(await db.crypto.encryptColumn(Server, 'licenseKey', { from: 'legacy_license' })).toEqual({ encrypted: 0 })
    const { rows: audit } = await db.knex.raw<{ rows: { metadata: Record<string, unknown> }[] }>(
      `select metadata from audit_logs where action = 'crypto.encrypt_column' order by created_at`,
    )
    expect(audit.map((r) => r.metadata.encrypted)).toEqual([3, 6, 0])
    expect(JSON.stringify(audit)).not.toMatch(/root-\d|LIC-/)
  })

  it('refuses what is not an encrypted property or a column, changing nothing', async () => {
    await expect(db.crypto.encryptColumn(Server, 'nope', { from: 'legacy_license' })).rejects.toBeInstanceOf(
      ValidationError,
    )
    await expect(
      db.crypto.encryptColumn(Server, 'rootPassword', { from: 'root_password_ciphertext' }),
    ).rejects.toBeInstanceOf(ValidationError)
    await expect(
      db.crypto.encryptColumn(Server, 'rootPassword', { from: 'legacy_license', batchSize: 0 }),
    ).rejects.toBeInstanceOf(ValidationError)
    await expect(db.crypto.rotate({ models: ['servers' as never] })).rejects.toBeInstanceOf(ValidationError)
    await expect(db.crypto.encryptColumn(Server, 'rootPassword', { from: 'no_such_column' })).rejects.toThrow(
      /column "no_such_column" does not exist/,
    )
  })

  it("rotates a host model's columns when it is listed, and counts its keys", async () => {
    expect((await db.crypto.keyUsage({ models: [Server] })).total).toEqual({ k1: 13 })
    const { db: next, cleanup: close } = await reopen(db, { keys: KEYS, current: 'k2', blindIndexKey: BLIND })
    try {
      // The default list is User and Droplet: the host model is left alone…
      await next.crypto.rotate()
      expect((await next.crypto.keyUsage({ models: [Server] })).total).toEqual({ k1: 13 })
      // …until it is listed.
      const { rotated } = await next.crypto.rotate({ models: [User, Droplet, Server] })
      expect(rotated).toBe(13)
      expect((await next.crypto.keyUsage({ models: [Server] })).total).toEqual({ k2: 13 })
      expect((await next.model(Server).query().orderBy('id'))[0]!.rootPassword).toMatch(/^root-|newer/)
    } finally {
      await close()
    }
  })

  it('rotates the blind-index key: lookups match old and new indexes meanwhile, rotate() recomputes them', async () => {
    const before = (await servers()).map((r) => r.license_key_bidx)
    const { db: next, cleanup: close } = await reopen(db, {
      keys: KEYS,
      current: 'k2',
      blindIndexKey: NEW_BLIND,
      previousBlindIndexKeys: [BLIND],
    })
    try {
      const lookup = async (d: Database, key: string): Promise<number> =>
        (
          await d
            .system('t')
            .repo(Server)
            .list({ filter: { licenseKey: key } })
        ).length
      // Old indexes still match, and a value written now gets a new-key index that matches too.
      expect(await lookup(next, 'LIC-1')).toBe(1)
      const fresh = await next.system('t').repo(Server).create({ licenseKey: 'LIC-new' })
      expect(await lookup(next, ' LIC-new')).toBe(1)
      const { reindexed } = await next.crypto.rotate({ models: [Server], batchSize: 2 })
      expect(reindexed).toBe(6) // the six moved values; the fresh one was already under the new key
      const after = (await servers()).filter((r) => r.id !== fresh.id).map((r) => r.license_key_bidx)
      for (const [i, index] of after.entries()) {
        if (before[i] === null) expect(index).toBeNull()
        else expect(index).not.toBe(before[i])
      }
      expect(await next.crypto.rotate({ models: [Server] })).toEqual({
        rotated: 0,
        reindexed: 0,
        refused: 0,
        refusals: [],
      })
    } finally {
      await close()
    }
    // Once done, the old key can go: lookups with only the new key find every value.
    const { db: done, cleanup: closeDone } = await reopen(db, { keys: KEYS, current: 'k2', blindIndexKey: NEW_BLIND })
    try {
      const list = await done
        .system('t')
        .repo(Server)
        .list({ filter: { licenseKey: 'LIC-2' } })
      expect(list).toHaveLength(1)
      expect(list[0]!.licenseKey).toBe(' LIC-2 ')
    } finally {
      await closeDone()
    }
  })
})
