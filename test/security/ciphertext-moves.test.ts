/**
 * Attack class: moving ciphertexts between rows, columns and tables.
 *
 * The attacker can write the database (the application's role, a leaked connection string, SQL injection elsewhere)
 * but holds no key. Envelopes (AES-256-GCM) bind each value to its table, column and row through the associated
 * data: moved, they fail with a DecryptionError that says only "Decryption failed". Fernet tokens from the Python
 * backend bind to nothing: the legacy-token inventory, taken right after the import, records each token's place,
 * and rotate() makes envelopes only of the tokens still at theirs. Every other token is refused (left as it is and
 * counted), and with no inventory every token is. The remaining limit is shown too: until it is rotated, a moved
 * token still decrypts where it was moved to.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ConfigError,
  DecryptionError,
  Droplet,
  User,
  ValidationError,
  createDatabase,
  type Database,
} from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'
import { runPython } from '../helpers/python.js'
import { needs } from '../helpers/tools.js'

const K1 = randomBytes(32).toString('base64')
const K2 = randomBytes(32).toString('base64')
const BLIND = randomBytes(32).toString('base64')
const SECRETS = ['alice-pw-1 ✓', 'alice-pw-2', 'bob-pw-3', 'bob-pw-4']

/** Runs one statement as a database writer with no key, straight on the server (not through the library). */
async function writeDirectly(url: string, sql: string, params: unknown[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    await client.query(sql, params)
  } finally {
    await client.end()
  }
}

/** What a row holds in a column, as stored. */
async function storedValue(db: Database, table: string, column: string, id: string): Promise<string | null> {
  const { rows } = await db.knex.raw<{ rows: { value: string | null }[] }>(`select ?? as value from ?? where id = ?`, [
    column,
    table,
    id,
  ])
  return rows[0]?.value ?? null
}

/** The error a read throws, which must be a DecryptionError saying nothing but "Decryption failed". */
function decryptionFailure(read: () => unknown): DecryptionError {
  let caught: unknown
  try {
    read()
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(DecryptionError)
  const error = caught as DecryptionError
  expect(error.message).toBe('Decryption failed')
  for (const secret of SECRETS) expect(JSON.stringify({ ...error, message: error.message })).not.toContain(secret)
  return error
}

describe.skipIf(!needs('python-backend', 'the tests against the Python backend'))(
  'legacy Fernet tokens cannot be moved between rows',
  () => {
    let db: Database
    let url: string
    let cleanup: () => Promise<void>
    let fernetKeyText: string
    let alice: User
    let bob: User
    /** Alice's two droplets, Bob's two, and Bob's droplet without a password (a place for a copied token). */
    let droplets: Droplet[]
    let tokens: string[]

    const stored = (table: string, column: string, id: string): Promise<string | null> =>
      storedValue(db, table, column, id)
    const adminPassword = async (owner: User, id: string): Promise<unknown> =>
      (await db.scope(owner).repo(Droplet).getById(id)).adminPassword

    beforeAll(async () => {
      // The Python backend's key and tokens, made now by Python's own cryptography.fernet.
      const made = runPython<{ key: string; tokens: string[] }>(
        `from cryptography.fernet import Fernet
key = Fernet.generate_key()
f = Fernet(key)
print(json.dumps({'key': key.decode(), 'tokens': [f.encrypt(t.encode('utf-8')).decode() for t in data]}))`,
        SECRETS,
      )
      fernetKeyText = made.key
      tokens = made.tokens
      ;({ db, url, cleanup } = await openTestDatabase({
        encryption: { keys: { k1: K1 }, current: 'k1', blindIndexKey: BLIND, legacyFernetKeys: [fernetKeyText] },
      }))
      const users = db.system('test').repo(User)
      alice = await users.create({ email: 'alice@example.com', username: 'alice', passwordHash: 'x' })
      bob = await users.create({ email: 'bob@example.com', username: 'bob', passwordHash: 'x' })
      const mine = await db
        .scope(alice)
        .repo(Droplet)
        .bulkCreate([
          { name: 'a-1', region: 'nyc3', size: 's' },
          { name: 'a-2', region: 'nyc3', size: 's' },
        ])
      const his = await db
        .scope(bob)
        .repo(Droplet)
        .bulkCreate([
          { name: 'b-3', region: 'nyc3', size: 's' },
          { name: 'b-4', region: 'nyc3', size: 's' },
          { name: 'b-5', region: 'nyc3', size: 's' },
        ])
      droplets = [...mine, ...his]
      // The import: each of the first four droplets gets its token from the Python backend, as SQL copies them.
      for (const [i, token] of tokens.entries()) {
        await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [
          token,
          droplets[i]!.id,
        ])
      }
    })
    afterAll(async () => {
      await cleanup()
    })

    it('reads the imported tokens, and rotate() with no inventory refuses every one of them, saying what to run', async () => {
      for (const [i, secret] of SECRETS.entries()) {
        expect(await adminPassword(i < 2 ? alice : bob, droplets[i]!.id)).toBe(secret)
      }
      const result = await db.crypto.rotate()
      expect(result).toMatchObject({ rotated: 0, reindexed: 0, refused: 4 })
      expect(result.refusals.map((r) => [r.rowId, r.reason])).toEqual(
        droplets.slice(0, 4).map((d) => [d.id, 'no-inventory']),
      )
      expect(result.refusals[0]!.message).toContain('db.crypto.inventoryLegacyTokens()')
      expect(JSON.stringify(result)).not.toMatch(/gAAAAA|pw-/)
      for (const [i, token] of tokens.entries()) {
        expect(await stored('droplets', 'admin_password_ciphertext', droplets[i]!.id)).toBe(token)
      }
      expect((await db.crypto.keyUsage()).total).toEqual({ fernet: 4 })
    })

    it('takes the inventory once; a later run records nothing new and reports what moved', async () => {
      expect(await db.crypto.inventoryLegacyTokens({ batchSize: 3 })).toEqual({
        recorded: 4,
        alreadyRecorded: 0,
        moved: 0,
        unlisted: 0,
        unreadable: 0,
      })
      const { rows } = await db.knex.raw<{ rows: { row_id: string; size: number }[] }>(
        `select row_id, octet_length(digest) as size from wincloud_legacy_tokens order by row_id`,
      )
      expect(rows).toEqual(
        droplets
          .slice(0, 4)
          .map((d) => ({ row_id: d.id, size: 32 }))
          .sort((a, b) => a.row_id.localeCompare(b.row_id)),
      )
      // The digests say nothing of the tokens: none is a hash of a token alone.
      expect(JSON.stringify(rows)).not.toContain('gAAAAA')

      // A database writer moves tokens: Alice's first to Bob's empty droplet (another row), her second to Bob's API
      // token (another column and table), and swaps Bob's two. Copying digest rows along does not help either: a
      // digest names its place.
      const [a1, a2, b3, b4, b5] = droplets
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [tokens[0], b5!.id])
      await writeDirectly(url, `update users set api_token_ciphertext = $1 where id = $2`, [tokens[1], bob.id])
      await writeDirectly(
        url,
        `update droplets set admin_password_ciphertext = case id when $1::uuid then $3 else $4 end where id in ($1, $2)`,
        [b3!.id, b4!.id, tokens[3], tokens[2]],
      )
      await writeDirectly(
        url,
        `insert into wincloud_legacy_tokens (table_name, column_name, row_id, digest)
       select table_name, column_name, $2, digest from wincloud_legacy_tokens where row_id = $1`,
        [a1!.id, b5!.id],
      )
      // The limit, until rotation: a moved token decrypts where it was moved to (reads cannot ask the inventory).
      expect(await adminPassword(bob, b5!.id)).toBe(SECRETS[0])
      expect(await adminPassword(bob, b3!.id)).toBe(SECRETS[3])

      // Running the inventory again does not adopt the moved tokens.
      expect(await db.crypto.inventoryLegacyTokens()).toEqual({
        recorded: 0,
        alreadyRecorded: 2, // a-1 and a-2, still in place
        moved: 3, // b-3 and b-4 swapped; b-5 has a copied entry that names another row
        unlisted: 1, // Bob's API token: a place without an entry
        unreadable: 0,
      })
      void a2
    })

    it('rotate() converts only the tokens still at their place, refuses the moved ones and leaves them as they are', async () => {
      const [a1, a2, b3, b4, b5] = droplets
      const { db: next, cleanup: close } = await reopen({
        keys: { k1: K1, k2: K2 },
        current: 'k2',
        blindIndexKey: BLIND,
        legacyFernetKeys: [fernetKeyText],
      })
      try {
        const progress: number[] = []
        const result = await next.crypto.rotate({ batchSize: 2, onProgress: (p) => progress.push(p.refused) })
        expect(result.rotated).toBe(2)
        expect(result.refused).toBe(4)
        expect(progress.at(-1)).toBe(4)
        expect(
          result.refusals
            .map((r) => `${r.table}.${r.column} ${r.rowId} ${r.reason}`)
            .sort((x, y) => x.localeCompare(y)),
        ).toEqual(
          [
            `droplets.admin_password_ciphertext ${b3!.id} moved`,
            `droplets.admin_password_ciphertext ${b4!.id} moved`,
            `droplets.admin_password_ciphertext ${b5!.id} moved`,
            `users.api_token_ciphertext ${bob.id} not-in-inventory`,
          ].sort((x, y) => x.localeCompare(y)),
        )
        expect(JSON.stringify(result)).not.toMatch(/gAAAAA|pw-/)
        // The refused values are exactly as the writer left them; the converted ones are envelopes under k2.
        expect(await stored('droplets', 'admin_password_ciphertext', b3!.id)).toBe(tokens[3])
        expect(await stored('droplets', 'admin_password_ciphertext', b4!.id)).toBe(tokens[2])
        expect(await stored('droplets', 'admin_password_ciphertext', b5!.id)).toBe(tokens[0])
        expect(await stored('users', 'api_token_ciphertext', bob.id)).toBe(tokens[1])
        const e1 = (await stored('droplets', 'admin_password_ciphertext', a1!.id))!
        const e2 = (await stored('droplets', 'admin_password_ciphertext', a2!.id))!
        expect(e1).toMatch(/^v1\.k2\./)
        expect(e2).toMatch(/^v1\.k2\./)
        expect((await next.scope(alice).repo(Droplet).getById(a1!.id)).adminPassword).toBe(SECRETS[0])
        expect((await next.scope(alice).repo(Droplet).getById(a2!.id)).adminPassword).toBe(SECRETS[1])
        // Converted tokens leave the inventory; the refused ones stay refused on every run.
        const { rows } = await next.knex.raw<{ rows: { row_id: string }[] }>(
          `select row_id from wincloud_legacy_tokens where row_id = any(?)`,
          [[a1!.id, a2!.id]],
        )
        expect(rows).toEqual([])
        expect(await next.crypto.rotate()).toMatchObject({ rotated: 0, refused: 4 })
        expect((await next.crypto.keyUsage()).total).toEqual({ k2: 2, fernet: 4 })

        // The converted envelopes decrypt only at their own rows: moved to another row, to another column and table,
        // or swapped, each fails with "Decryption failed".
        await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e1, b5!.id])
        await writeDirectly(url, `update users set api_token_ciphertext = $1 where id = $2`, [e2, bob.id])
        await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e2, a1!.id])
        await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e1, a2!.id])
        const b5Row = await next.scope(bob).repo(Droplet).getById(b5!.id)
        decryptionFailure(() => b5Row.adminPassword)
        const bobRow = (await next.model(User).query().findById(bob.id))!
        decryptionFailure(() => bobRow.apiToken)
        const a1Row = await next.scope(alice).repo(Droplet).getById(a1!.id)
        const a2Row = await next.scope(alice).repo(Droplet).getById(a2!.id)
        decryptionFailure(() => a1Row.adminPassword)
        decryptionFailure(() => a2Row.adminPassword)
        // Put back at their own rows, they read again.
        await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e1, a1!.id])
        await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e2, a2!.id])
        expect((await next.scope(alice).repo(Droplet).getById(a1!.id)).adminPassword).toBe(SECRETS[0])
        expect((await next.scope(alice).repo(Droplet).getById(a2!.id)).adminPassword).toBe(SECRETS[1])
      } finally {
        await close()
      }
      // Once the Fernet keys are off the ring, no leftover token decrypts anywhere.
      const { db: done, cleanup: closeDone } = await reopen({ keys: { k2: K2 }, current: 'k2', blindIndexKey: BLIND })
      try {
        const b3Row = await done.scope(bob).repo(Droplet).getById(b3!.id)
        decryptionFailure(() => b3Row.adminPassword)
      } finally {
        await closeDone()
      }
    })

    it('a token the inventory vouches for is refused once moved away from its row, and converted once put back', async () => {
      // Bob's own swapped tokens, put back where the inventory found them, are converted by the next run.
      const [, , b3, b4] = droplets
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [tokens[2], b3!.id])
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [tokens[3], b4!.id])
      const { db: next, cleanup: close } = await reopen({
        keys: { k1: K1, k2: K2 },
        current: 'k2',
        blindIndexKey: BLIND,
        legacyFernetKeys: [fernetKeyText],
      })
      try {
        // (Bob's empty droplet and his API token hold envelopes under k2 now, from the test above.)
        const result = await next.crypto.rotate()
        expect(result).toMatchObject({ rotated: 2, refused: 0 })
        expect((await next.scope(bob).repo(Droplet).getById(b3!.id)).adminPassword).toBe(SECRETS[2])
        expect((await next.scope(bob).repo(Droplet).getById(b4!.id)).adminPassword).toBe(SECRETS[3])
      } finally {
        await close()
      }
    })

    it('needs the blind-index key: without it the inventory is a ConfigError and rotate() refuses every token', async () => {
      const [, , , , b5] = droplets
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [tokens[0], b5!.id])
      const { db: keyless, cleanup: close } = await reopen({
        keys: { k2: K2 },
        current: 'k2',
        legacyFernetKeys: [fernetKeyText],
      })
      try {
        await expect(keyless.crypto.inventoryLegacyTokens()).rejects.toBeInstanceOf(ConfigError)
        const result = await keyless.crypto.rotate()
        expect(result).toMatchObject({ rotated: 0, refused: 1 })
        expect(result.refusals.map((r) => [r.rowId, r.reason])).toEqual([[b5!.id, 'no-key']])
        await expect(keyless.crypto.inventoryLegacyTokens({ reopen: 'yes' as never })).rejects.toBeInstanceOf(
          ConfigError,
        )
      } finally {
        await close()
      }
      // reopen: true trusts the rows as they are (it is for a second import, before the database is exposed again);
      // b-5 still has the copied entry, which is never overwritten, so its token stays refused.
      const { db: next, cleanup: closeNext } = await reopen({
        keys: { k2: K2 },
        current: 'k2',
        blindIndexKey: BLIND,
        legacyFernetKeys: [fernetKeyText],
      })
      try {
        await expect(next.crypto.inventoryLegacyTokens({ reopen: 'yes' as never })).rejects.toBeInstanceOf(
          ValidationError,
        )
        expect(await next.crypto.inventoryLegacyTokens({ reopen: true })).toMatchObject({ recorded: 0, moved: 1 })
        expect(await next.crypto.rotate()).toMatchObject({ rotated: 0, refused: 1 })
        expect(await stored('droplets', 'admin_password_ciphertext', b5!.id)).toBe(tokens[0])
      } finally {
        await closeNext()
      }
    })

    /** Another Database on the same database, with other keys (through PgBouncer in the PgBouncer run). */
    async function reopen(encryption: object): Promise<{ db: Database; cleanup: () => Promise<void> }> {
      const connection = (db.knex.client as { config: { connection: { connectionString: string } } }).config.connection
        .connectionString
      const other = await createDatabase({ connection, encryption: encryption as never })
      return { db: other, cleanup: () => other.close() }
    }
  },
)

describe('envelopes cannot be moved between rows', () => {
  it('a moved or swapped envelope fails with a DecryptionError that says only "Decryption failed"', async () => {
    const { db, url, cleanup } = await openTestDatabase({
      encryption: { keys: { k1: K1 }, current: 'k1', blindIndexKey: BLIND },
    })
    try {
      const users = db.system('test').repo(User)
      const alice = await users.create({
        email: 'alice@example.com',
        username: 'alice',
        passwordHash: 'x',
        apiToken: SECRETS[1],
      })
      const bob = await users.create({ email: 'bob@example.com', username: 'bob', passwordHash: 'x' })
      const [a1, a2] = await db
        .scope(alice)
        .repo(Droplet)
        .bulkCreate([
          { name: 'a-1', region: 'nyc3', size: 's', adminPassword: SECRETS[0] },
          { name: 'a-2', region: 'nyc3', size: 's', adminPassword: SECRETS[2] },
        ])
      const b1 = await db.scope(bob).repo(Droplet).create({ name: 'b-1', region: 'nyc3', size: 's' })
      const envelope = async (table: string, column: string, id: string): Promise<string> =>
        (await storedValue(db, table, column, id))!
      const e1 = await envelope('droplets', 'admin_password_ciphertext', a1!.id)
      const e2 = await envelope('droplets', 'admin_password_ciphertext', a2!.id)
      const token = await envelope('users', 'api_token_ciphertext', alice.id)
      // Another row, another column and table (both ways), and a swap.
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e1, b1.id])
      await writeDirectly(url, `update users set api_token_ciphertext = $1 where id = $2`, [e1, bob.id])
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [token, b1.id])
      const b1Row = await db.scope(bob).repo(Droplet).getById(b1.id)
      decryptionFailure(() => b1Row.adminPassword)
      const bobRow = (await db.model(User).query().findById(bob.id))!
      decryptionFailure(() => bobRow.apiToken)
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e2, a1!.id])
      await writeDirectly(url, `update droplets set admin_password_ciphertext = $1 where id = $2`, [e1, a2!.id])
      for (const d of [a1!, a2!]) {
        const row = await db.scope(alice).repo(Droplet).getById(d.id)
        const error = decryptionFailure(() => row.adminPassword)
        expect(JSON.stringify(error)).not.toMatch(/pw-|v1\.k1\./)
      }
    } finally {
      await cleanup()
    }
  })
})
