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

beforeAll(async () => {
  ;({ db, cleanup } = await openTestDatabase({ auth: { passwordHash: fastHash } }))
})
afterAll(async () => {
  await cleanup()
})

async function addUser(name: string, passwordHash: string, extra: Partial<User> = {}): Promise<User> {
  return db
    .model(User)
    .query()
    .insertAndFetch({ email: `${name}@Example.com`, username: name, passwordHash, ...extra })
}

describe('db.auth.login', () => {
  it('finds a user by email or username, case-insensitively', async () => {
    const ada = await addUser('Ada', await hashPassword('analytical engine', fastHash))
    for (const login of ['ada@example.com', 'ADA@EXAMPLE.COM', 'Ada', 'ada']) {
      const user = await db.auth.login(login, 'analytical engine')
      expect(user.id).toBe(ada.id)
      expect(JSON.stringify(user)).not.toContain('passwordHash')
    }
  })

  it('fails the same way for a wrong password, an unknown user, an inactive user and bad input', async () => {
    await addUser('grace', await hashPassword('cobol', fastHash))
    await addUser('linus', await hashPassword('kernel', fastHash), { isActive: false })
    const failures = await Promise.all(
      [
        ['grace', 'fortran'],
        ['nobody@example.com', 'cobol'],
        ['linus', 'kernel'],
        ['', 'x'],
        ['grace', ''],
        [{ $ne: 1 } as never, 'x'],
        ['grace', 'x'.repeat(5000)],
      ].map(([login, password]) => db.auth.login(login!, password!).catch((e: unknown) => e)),
    )
    for (const error of failures) {
      expect(error).toBeInstanceOf(AuthenticationError)
      expect((error as AuthenticationError).message).toBe('Invalid credentials')
      expect((error as AuthenticationError).httpStatus).toBe(401)
    }
  })

  it('tells listeners what happened, never the password, and keeps what they write even when login fails', async () => {
    await addUser('barbara', await hashPassword('liskov', fastHash))
    const seen: LoginAttempt[] = []
    const off = db.auth.onLoginAttempt(async (attempt) => {
      seen.push(attempt)
      await attempt.transaction.raw('create table if not exists login_probe (login text, ok boolean)')
      await attempt.transaction.raw('insert into login_probe values (?, ?)', [attempt.login, attempt.success])
    })
    try {
      await db.auth.login('barbara', 'liskov')
      await db.auth.login('barbara', 'bad-guess').catch(() => undefined)
      await db.auth.login('ghost', 'x').catch(() => undefined)
    } finally {
      off()
    }
    expect(seen.map((a) => [a.login, a.success, a.reason])).toEqual([
      ['barbara', true, 'ok'],
      ['barbara', false, 'wrong-password'],
      ['ghost', false, 'unknown-user'],
    ])
    expect(JSON.stringify(seen.map(({ transaction: _t, ...rest }) => rest))).not.toMatch(/liskov|bad-guess/)
    const { rows } = await db.knex.raw('select login, ok from login_probe order by ok desc, login')
    expect(rows).toEqual([
      { login: 'barbara', ok: true },
      { login: 'barbara', ok: false },
      { login: 'ghost', ok: false },
    ])
  })

  it('upgrades an outdated scrypt hash to the configured cost on success', async () => {
    const old = await hashPassword('upgrade me', { cost: 11 })
    const user = await addUser('ken', old)
    await db.auth.login('ken', 'upgrade me')
    const stored = (await db.model(User).query().findById(user.id))!.passwordHash
    expect(stored).toMatch(/^\$scrypt\$ln=10,/)
    expect(await verifyPassword('upgrade me', stored)).toBe(true)
  })
})

const withPython = needs('python-backend', 'the password hash tests against passlib')

describe.skipIf(!withPython)('hashes shared with the Python backend (passlib)', () => {
  it('verifies passlib bcrypt hashes ($2a$, $2b$, $2y$), upgrades them to scrypt, and refuses wrong passwords', async () => {
    const hashes = runPython<string[]>(
      `from passlib.hash import bcrypt
print(json.dumps([bcrypt.using(rounds=4, ident=i).hash(data) for i in ['2a', '2b', '2y']]))`,
      'pässwörd ✓',
    )
    expect(hashes.map((h) => h.slice(0, 4))).toEqual(['$2a$', '$2b$', '$2y$'])
    for (const [i, hash] of hashes.entries()) {
      const user = await addUser(`legacy${i}`, hash)
      await expect(db.auth.login(`legacy${i}`, 'passwörd')).rejects.toBeInstanceOf(AuthenticationError)
      expect((await db.model(User).query().findById(user.id))!.passwordHash).toBe(hash)
      await db.auth.login(`legacy${i}`, 'pässwörd ✓')
      const upgraded = (await db.model(User).query().findById(user.id))!.passwordHash
      expect(upgraded).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$/)
      await db.auth.login(`LEGACY${i}@example.com`, 'pässwörd ✓')
    }
  })

  it('verifies passlib scrypt hashes, and passlib verifies ours', async () => {
    const password = 'correct horse ✓ + /'
    const theirs = runPython<string[]>(
      `from passlib.hash import scrypt
print(json.dumps([scrypt.using(rounds=10).hash(data) for _ in range(8)]))`,
      password,
    )
    for (const hash of theirs) {
      expect(await verifyPassword(password, hash)).toBe(true)
      expect(await verifyPassword(`${password}!`, hash)).toBe(false)
    }
    const ours = await Promise.all(Array.from({ length: 8 }, () => hashPassword(password, fastHash)))
    const verdicts = runPython<boolean[][]>(
      `from passlib.hash import scrypt
print(json.dumps([[scrypt.verify(data['password'], h), scrypt.verify(data['password'] + '!', h)] for h in data['hashes']]))`,
      { password, hashes: ours },
    )
    expect(verdicts).toEqual(ours.map(() => [true, false]))
  })
})
