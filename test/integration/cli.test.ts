import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.js'
import { Droplet, MIGRATIONS_TABLE, User, type Database } from '../../src/index.js'
import { openTestDatabase } from '../helpers/database.js'
import { needs } from '../helpers/tools.js'

describe('wincloud-data rotate-keys', () => {
  it('draws a progress bar on a terminal (a line per batch otherwise) up to every value rotated', async () => {
    const k1 = randomBytes(32).toString('base64')
    const k2 = randomBytes(32).toString('base64')
    const { db, url, cleanup } = await openTestDatabase({ encryption: { keys: { k1 }, current: 'k1' } })
    try {
      const user = await db
        .system('t')
        .repo(User)
        .create({ email: 'cli@example.com', username: 'cli', passwordHash: 'x' })
      await db
        .scope(user)
        .repo(Droplet)
        .bulkCreate(
          Array.from({ length: 7 }, (_, i) => ({ name: `d${i}`, region: 'nyc3', size: 's', adminPassword: `p${i}` })),
        )
      const env = { DATABASE_URL: url, WINCLOUD_ENCRYPTION: JSON.stringify({ keys: { k1, k2 }, current: 'k2' }) }
      const out: string[] = []
      const err: string[] = []
      const status: string[] = []
      const code = await runCli(['rotate-keys', '--batch-size', '3'], {
        out: (line) => out.push(line),
        err: (line) => err.push(line),
        status: (line) => status.push(line),
        env,
      })
      expect(code).toBe(0)
      expect(status.filter((line) => line !== '')).toEqual([
        expect.stringMatching(/^\[#{10}-{14}\] {2}43% {2}3 \/ 7 {2}droplets\.admin_password_ciphertext$/),
        expect.stringMatching(/^\[#{21}-{3}\] {2}86% {2}6 \/ 7 /),
        expect.stringMatching(/^\[#{24}\] 100% {2}7 \/ 7 /),
      ])
      expect(status.at(-1)).toBe('') // the bar is cleared before the summary
      expect(err).toEqual([])
      expect(out[0]).toMatch(/^rotated 7 values in/)
      expect(out).toContain('droplets.admin_password_ciphertext: k2 7')
      // Without a terminal: the same progress, a line per batch on stderr (rotating back to k1 this time).
      const plain: string[] = []
      const back = { ...env, WINCLOUD_ENCRYPTION: JSON.stringify({ keys: { k1, k2 }, current: 'k1' }) }
      expect(
        await runCli(['rotate-keys', '--batch-size', '5'], {
          out: () => undefined,
          err: (l) => plain.push(l),
          env: back,
        }),
      ).toBe(0)
      expect(plain).toEqual([
        expect.stringMatching(/ {2}71% {2}5 \/ 7 {2}droplets/),
        expect.stringMatching(/ 100% {2}7 \/ 7 {2}droplets/),
      ])
      expect(JSON.stringify([out, err, status])).not.toContain(k1)
    } finally {
      await cleanup()
    }
  })
})

/** The repository's root: the CLI runs from its source there. */
const ROOT = join(__dirname, '../..')

/** The CLI's command line, from the source: node with tsx, then main.ts and `args`. */
function cliCommand(args: readonly string[]): string[] {
  return [process.execPath, '--import', 'tsx', 'src/cli/main.ts', ...args]
}

/**
 * Runs `wincloud-data` as a process of its own, on `url`. Without `answer`, its stdin is a pipe closed at once: no
 * terminal. With `answer`, it runs on a terminal of its own (a pseudo-terminal made by `script`), and `answer` is
 * typed once the question shows; stdout and stderr both go to the terminal, and come back in `stdout`.
 */
function runCliProcess(
  args: readonly string[],
  url: string,
  answer?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [command, ...rest] =
    answer === undefined
      ? cliCommand(args)
      : [
          'script',
          '-qec',
          cliCommand(args)
            .map((a) => `'${a.replaceAll("'", `'\\''`)}'`)
            .join(' '),
          '/dev/null',
        ]
  const child = spawn(command!, rest, { cwd: ROOT, env: { ...process.env, DATABASE_URL: url } })
  let stdout = ''
  let stderr = ''
  let asked = false
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    if (answer !== undefined && !asked && stdout.includes('Type yes')) {
      asked = true
      child.stdin.write(`${answer}\n`)
    }
  })
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  if (answer === undefined) child.stdin.end()
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** What a rollback could take away: the migrations recorded, and the users (undefined once the table is gone). */
async function state(db: Database): Promise<{ applied: readonly string[]; users: number | undefined }> {
  const { applied } = await db.migrate.status()
  const { rows } = await db.knex.raw<{ rows: { present: boolean }[] }>(
    `select to_regclass('users') is not null as present`,
  )
  if (rows[0]?.present !== true) return { applied, users: undefined }
  const counted = await db.knex.raw<{ rows: { n: string }[] }>('select count(*) as n from users')
  return { applied, users: Number(counted.rows[0]!.n) }
}

const ALL_MIGRATIONS = [
  '0001_initial',
  '0002_audit',
  '0003_encrypted_columns',
  '0004_audit_chain_hardening',
  '0005_legacy_token_inventory',
]

/** Whether `script` (which runs a command on a pseudo-terminal) is there. */
const hasScript = needs('script', 'the CLI prompt on a terminal')

describe('wincloud-data migrate rollback', () => {
  it('documents --yes in its help', async () => {
    const out: string[] = []
    expect(await runCli(['migrate', '--help'], { out: (l) => out.push(l), err: () => undefined, env: {} })).toBe(0)
    expect(out.join('\n')).toMatch(/--yes +rollback: drop tables that hold rows without asking/)
  })

  it('without a terminal, refuses to drop tables that hold rows unless --yes is given', async () => {
    const { db, url, cleanup } = await openTestDatabase()
    try {
      await db
        .system('t')
        .repo(User)
        .create({ email: 'cli-rollback@example.com', username: 'clirb', passwordHash: 'x' })
      const before = await state(db)
      expect(before).toEqual({ applied: ALL_MIGRATIONS, users: 1 })

      const refused = await runCliProcess(['migrate', 'rollback', '--all'], url)
      expect(refused.code).toBe(2)
      expect(refused.stdout).toMatch(/^ {2}users +1 row$/m)
      expect(refused.stdout).toMatch(/^ {2}droplets +0 rows$/m)
      expect(refused.stdout).not.toContain('rolled back')
      expect(refused.stderr).toMatch(/would drop tables that hold rows: audit_logs \(\d+ rows?\), users \(1 row\)/)
      expect(refused.stderr).toContain('Nothing was changed: pass --yes')
      expect(await state(db)).toEqual(before)

      // A host table in the way: refused whatever --yes says, naming it (exit 1), and nothing changed.
      await db.knex.raw(`create table user_notes (id uuid primary key, user_id uuid references users)`)
      const blocked = await runCliProcess(['migrate', 'rollback', '--all', '--yes'], url)
      expect(blocked.code).toBe(1)
      expect(blocked.stderr).toBe(
        'wincloud-data: ConflictError: Rollback refused, nothing was changed: ' +
          'user_notes.user_id references users: drop or alter it first.\n',
      )
      expect(await state(db)).toEqual(before)
      await db.knex.raw(`drop table user_notes`)

      const confirmed = await runCliProcess(['migrate', 'rollback', '--all', '--yes'], url)
      expect(confirmed.stderr).toBe('')
      expect(confirmed.code).toBe(0)
      expect(confirmed.stdout).toContain(`rolled back: ${[...ALL_MIGRATIONS].reverse().join(', ')}`)
      expect(await state(db)).toEqual({ applied: [], users: undefined })
    } finally {
      await cleanup()
    }
  })

  it('rolls back without asking when the tables hold no rows, listing them', async () => {
    const { db, url, cleanup } = await openTestDatabase()
    try {
      const result = await runCliProcess(['migrate', 'rollback'], url)
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      expect(result.stdout.split('\n')).toEqual([
        `rolling back ${[...ALL_MIGRATIONS].reverse().join(', ')} drops these tables:`,
        '  wincloud_legacy_token_columns  0 rows',
        '  wincloud_legacy_tokens         0 rows',
        '  wincloud_audit_chain           1 row (none written by the application)',
        '  audit_logs                     0 rows',
        '  droplets                       0 rows',
        '  users                          0 rows',
        `rolled back: ${[...ALL_MIGRATIONS].reverse().join(', ')}`,
        '',
      ])
      expect(await state(db)).toEqual({ applied: [], users: undefined })
      const tables = await db.knex.raw<{ rows: { n: string }[] }>(
        `select count(*) as n from pg_tables where schemaname = 'public' and tablename not like '${MIGRATIONS_TABLE}%'`,
      )
      expect(tables.rows[0]!.n).toBe('0')
    } finally {
      await cleanup()
    }
  })

  it.skipIf(!hasScript)('on a terminal, asks before dropping rows and goes on only when told yes', async () => {
    const { db, url, cleanup } = await openTestDatabase()
    try {
      await db.system('t').repo(User).create({ email: 'cli-tty@example.com', username: 'clitty', passwordHash: 'x' })
      const before = await state(db)

      const declined = await runCliProcess(['migrate', 'rollback'], url, 'no')
      expect(declined.stdout).toMatch(
        /Drop audit_logs \(\d+ rows?\), users \(1 row\), and every row in them\? Type yes/,
      )
      expect(declined.stdout).toContain('migrate rollback cancelled: nothing was changed')
      expect(declined.code).toBe(2)
      expect(await state(db)).toEqual(before)

      const accepted = await runCliProcess(['migrate', 'rollback'], url, 'yes')
      expect(accepted.stdout).toContain('Type yes')
      expect(accepted.stdout).toContain('rolled back: 0005_legacy_token_inventory')
      expect(accepted.code).toBe(0)
      expect(await state(db)).toEqual({ applied: [], users: undefined })
    } finally {
      await cleanup()
    }
  })
})
