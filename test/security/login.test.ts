import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  AuthenticationError,
  hashPassword,
  User,
  verifyPassword,
  type Database,
  type LoginAttempt,
} from '../../src/index.js'
import { fastHash, openTestDatabase } from '../helpers/database.js'
import { runPython } from '../helpers/python.js'
import { needs } from '../helpers/tools.js'

let db: Database
let cleanup: () => Promise<void>
const attempts: LoginAttempt[] = []
/** A user with a scrypt hash of "secret". */
let user: User
/** The error of a plain wrong password, which every other failure must look exactly like. */
let wrongPassword: AuthenticationError

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase({ auth: { passwordHash: fastHash } }))
  db.auth.onLoginAttempt((attempt) => {
    attempts.push(attempt)
  })
  user = await addUser('nul', await hashPassword('secret', fastHash))
  wrongPassword = (await failure('nul', 'not the secret')) as AuthenticationError
  expect(wrongPassword).toBeInstanceOf(AuthenticationError)
})
afterAll(async () => {
  await cleanup()
})

async function addUser(name: string, passwordHash: string): Promise<User> {
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@example.com`, username: name, passwordHash })
}

const storedHash = async (user: User): Promise<string> => (await db.model(User).query().findById(user.id))!.passwordHash

const utf8Bytes = (text: string): number => Buffer.byteLength(text, 'utf8')

/** bcrypt hashes made the way the Python backend made them (passlib over the bcrypt module), at run time. */
function pythonBcrypt(passwords: readonly string[]): string[] {
  return runPython<string[]>(
    `from passlib.hash import bcrypt
print(json.dumps([bcrypt.using(rounds=4, ident='2b').hash(p) for p in data]))`,
    passwords,
  )
}

async function failure(login: unknown, password: unknown): Promise<unknown> {
  return db.auth.login(login as string, password as string).then(
    () => new Error('logged in'),
    (error: unknown) => error,
  )
}

function expectSameFailure(error: unknown, what: string): void {
  expect(error, what).toBeInstanceOf(AuthenticationError)
  const e = error as AuthenticationError
  expect(e.message, what).toBe(wrongPassword.message)
  expect(e.code, what).toBe(wrongPassword.code)
  expect(e.httpStatus, what).toBe(401)
  expect(JSON.stringify(e), what).toBe(JSON.stringify(wrongPassword))
}

async function failedLoginRows(): Promise<number> {
  const { rows } = await db.knex.raw<{ rows: { n: number }[] }>(
    `select count(*)::int as n from audit_logs where action = 'auth.login_failed'`,
  )
  return rows[0]!.n
}

describe.skipIf(!needs('python-backend', 'the tests against the Python backend'))(
  'legacy bcrypt hashes and the 72-byte limit',
  () => {
    // 80 bytes, and 40 characters of two bytes each: bcrypt sees only the first 72 bytes of either.
    const ascii = 'correct horse battery staple, correct horse battery staple, correct horse battery'.slice(0, 80)
    const wide = 'ü'.repeat(40)
    const prefix = (text: string, bytes: number): string => Buffer.from(text).subarray(0, bytes).toString()

    it('keeps the bcrypt hash when the password that verified has 72 bytes or more, so the real one keeps working', async () => {
      expect([utf8Bytes(ascii), utf8Bytes(wide), wide.length]).toEqual([80, 80, 40])
      const hashes = pythonBcrypt([ascii, wide])
      for (const [i, real] of [ascii, wide].entries()) {
        const hash = hashes[i]!
        const user = await addUser(`long${i}`, hash)
        const first72 = prefix(real, 72)
        expect(utf8Bytes(first72)).toBe(72)
        // bcrypt's own semantics: the first 72 bytes decide, so these log in...
        for (const typed of [`${first72}junk`, `${first72}${'x'.repeat(100)}`, first72]) {
          expect((await db.auth.login(`long${i}`, typed)).id).toBe(user.id)
          // ...but what was typed may not be the real password: the hash must not become a hash of it.
          expect(await storedHash(user)).toBe(hash)
        }
        // The real password still works, and it is not upgraded either: the hash stays bcrypt for good.
        expect((await db.auth.login(`long${i}`, real)).id).toBe(user.id)
        expect(await storedHash(user)).toBe(hash)
        expect((await db.auth.login(`long${i}@example.com`, real)).id).toBe(user.id)
      }
    })

    it('still upgrades a bcrypt hash to scrypt when the password has fewer than 72 bytes', async () => {
      const passwords = ['short one', 'y'.repeat(71), `${'ü'.repeat(35)}z`]
      expect(passwords.map(utf8Bytes)).toEqual([9, 71, 71])
      const hashes = pythonBcrypt(passwords)
      for (const [i, password] of passwords.entries()) {
        const user = await addUser(`short${i}`, hashes[i]!)
        await db.auth.login(`short${i}`, password)
        const upgraded = await storedHash(user)
        expect(upgraded).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$/)
        expect(await verifyPassword(password, upgraded)).toBe(true)
        expect((await db.auth.login(`short${i}`, password)).id).toBe(user.id)
      }
    })

    it('refuses a password with a NUL for a bcrypt hash, as passlib does, so "pw\\0pw" is not "pw"', async () => {
      const [hash] = pythonBcrypt(['hunter22'])
      const user = await addUser('nulbcrypt', hash!)
      // bcrypt cycles its key (the password and a NUL terminator): "hunter22\0hunter22" is the same key.
      for (const typed of ['hunter22\0hunter22', 'hunter22\0hunter22\0hunter22', `hunter22\0`]) {
        expectSameFailure(await failure('nulbcrypt', typed), JSON.stringify(typed))
        expect(await storedHash(user)).toBe(hash)
      }
      expect((await db.auth.login('nulbcrypt', 'hunter22')).id).toBe(user.id)
      expect(await storedHash(user)).toMatch(/^\$scrypt\$/)
    })
  },
)

describe('malformed login input fails like a wrong password', () => {
  it('a NUL in the login name, the password, or both is a 401, never a 400 or a driver error', async () => {
    const cases: [string, string][] = [
      ['nul\0', 'secret'],
      ['n\0ul', 'secret'],
      ['\0nul', 'secret'],
      ['nul\0@example.com', 'secret'],
      ['nul@example.com\0', 'secret'],
      ['\0', 'secret'],
      ['nul', 'secret\0'],
      ['nul', 'sec\0ret'],
      ['nul', '\0'],
      ['nul@example.com', '\0secret'],
      ['nul\0', 'secret\0'],
      ['\0', '\0'],
    ]
    for (const [login, password] of cases) {
      expectSameFailure(await failure(login, password), JSON.stringify([login, password]))
    }
    expect(await storedHash(user)).toMatch(/^\$scrypt\$/)
    expect((await db.auth.login('nul', 'secret')).id).toBe(user.id)
  })

  it('so are empty, over-long, non-string and ill-formed (lone surrogate) names and passwords', async () => {
    const cases: [unknown, unknown][] = [
      ['', 'secret'],
      ['nul', ''],
      ['', ''],
      ['x'.repeat(321), 'secret'],
      [`${'x'.repeat(10_000)}@example.com`, 'secret'],
      ['nul', 'x'.repeat(5_000)],
      ['nul', 's'.repeat(1_000_000)],
      [undefined, 'secret'],
      [null, 'secret'],
      [42, 'secret'],
      [{ $ne: null }, 'secret'],
      [['nul'], 'secret'],
      [Buffer.from('nul'), 'secret'],
      [new String('nul'), 'secret'],
      [{ toString: () => 'nul' }, 'secret'],
      ['nul', undefined],
      ['nul', null],
      ['nul', 1234],
      ['nul', ['secret']],
      ['nul', new String('secret')],
      ['nul', { toString: () => 'secret' }],
      ['nul\uD800', 'secret'],
      ['\uDC00nul', 'secret'],
      ['nul@exa\uD83Dmple.com', 'secret'],
      ['nul', 'secret\uD800'],
      ['nul', '\uDFFF'],
      ['nul\uD800', 'secret\uDC00'],
    ]
    for (const [login, password] of cases) {
      expectSameFailure(
        await failure(login, password),
        `${typeof login}/${typeof password}: ${String(login).slice(0, 40)}`,
      )
    }
    expect((await db.auth.login('nul', 'secret')).id).toBe(user.id)
  })

  it('audits what reaches the lookup like a wrong password or an unknown user, and nothing for a name no user can have', async () => {
    attempts.length = 0
    const before = await failedLoginRows()
    await failure('nul', 'sec\0ret')
    await failure('ghost', 'sec\0ret')
    await failure('nul', 'secret\uD800')
    expect(attempts.map((a) => [a.login, a.reason])).toEqual([
      ['nul', 'wrong-password'],
      ['ghost', 'unknown-user'],
      ['nul', 'wrong-password'],
    ])
    expect(await failedLoginRows()).toBe(before + 3)
    attempts.length = 0
    for (const login of ['nul\0', '\0', 'nul\uD800', '', 'x'.repeat(321), 42]) await failure(login, 'secret')
    expect(attempts).toEqual([])
    expect(await failedLoginRows()).toBe(before + 3)
  })
})
