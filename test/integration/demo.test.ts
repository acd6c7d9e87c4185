import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createDatabase } from '../../src/index.js'
import { createTestDatabase } from '../helpers/database.js'

/** The repository's root: the demo runs from there, as `npm run demo` does. */
const ROOT = join(__dirname, '../..')

/** Runs examples/quickstart.ts as a process of its own on `url`, as `DATABASE_URL=… npm run demo` does. */
function runDemo(url: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/quickstart.ts'], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** The line of the output that starts with `start` (after the indentation). */
function line(stdout: string, start: string): string {
  const found = stdout.split('\n').find((l) => l.trimStart().startsWith(start))
  if (found === undefined) throw new Error(`no line starting with ${JSON.stringify(start)} in:\n${stdout}`)
  return found
}

/** A status summary as step 4 prints it ("2 active, 1 stopped, 1 building"), as a map. */
function statusCounts(summary: string): Record<string, number> {
  return Object.fromEntries(
    summary.split(', ').map((part) => {
      const [n, status] = part.split(' ')
      return [status!, Number(n)]
    }),
  )
}

describe('the quick-start demo on a database it did not create (DATABASE_URL)', () => {
  it('runs again and again on the same database, and changes there only what it said it would', async () => {
    const testDb = await createTestDatabase('demo')
    try {
      const first = await runDemo(testDb.url)
      expect(first.stderr).toBe('')
      expect(first.code).toBe(0)
      expect(first.stdout).toContain('DATABASE_URL names a database this demo did not create')
      expect(line(first.stdout, '2. ')).toMatch(/^2\. Migrations: applied 0001_initial, /)
      expect(line(first.stdout, '3. ')).toContain('(3 new) and 4 droplets each (12 new)')
      expect(line(first.stdout, '9. ')).toMatch(/^9\. user1 logged in as USER1@wincloud\.test/)

      const second = await runDemo(testDb.url)
      expect(second.stderr).toBe('')
      expect(second.code).toBe(0)
      const out = second.stdout
      // Every step is there, and the ones that need the earlier run's data worked.
      for (let step = 1; step <= 16; step++) expect(out).toMatch(new RegExp(`^${step}\\. `, 'm'))
      expect(line(out, '2. ')).toBe('2. Migrations: already up to date.')
      expect(line(out, '3. ')).toContain(
        '(already there), users user1, user2, user3 (0 new) and 4 droplets each (0 new)',
      )
      expect(line(out, '9. ')).toMatch(/^9\. user1 was there before this run, so it first gets a new random password/)
      expect(line(out, 'user1 logged in as ')).toMatch(/^ {3}user1 logged in as USER1@wincloud\.test/)
      expect(line(out, 'Counting the sample droplets')).toContain('the admin sees 12, user1 sees 4')
      expect(line(out, '10. ')).toContain('gets NotFoundError (HTTP 404)')
      expect(line(out, '11. ')).toContain('By cursor: 3 pages, 12 droplets, 12 of them distinct')
      expect(line(out, '12. ')).toMatch(/4 of theirs were set to stopped .* The other users' 2 came back as not found/)
      expect(line(out, '13. ')).toContain('The hash chain is off on this database, and the demo leaves it off')
      expect(line(out, 'A delete from audit_logs')).toContain('is refused by the database itself')
      expect(line(out, '14. ')).toContain('read back through the repository, it is the password again')
      expect(line(out, '15. ')).toMatch(/^15\. Health: healthy/)
      expect(line(out, '16. ')).toContain('administrator password is cleared again')

      // The database is as the output says.
      const db = await createDatabase({ connection: testDb.url })
      try {
        expect(await db.migrate.status()).toMatchObject({ pending: [] })
        // The hash chain: never turned on, as the output said.
        expect(await db.audit.head()).toBeUndefined()
        expect(await db.audit.verify()).toMatchObject({ enabled: false })
        const query = async <R>(sql: string): Promise<R[]> => (await db.knex.raw<{ rows: R[] }>(sql)).rows
        expect(await query(`select enabled_at from wincloud_audit_chain`)).toEqual([{ enabled_at: null }])
        expect(await query(`select count(*)::int as n from audit_logs where chain_seq is not null`)).toEqual([{ n: 0 }])
        // The sample accounts and droplets, once, however many runs.
        const emails = await query<{ email: string }>(`select email from users order by email`)
        expect(emails.map((r) => r.email)).toEqual([
          'admin@wincloud.test',
          'user1@wincloud.test',
          'user2@wincloud.test',
          'user3@wincloud.test',
        ])
        const droplets = await query<{
          owner: string
          name: string
          status: string
          size: string
          secret: string | null
        }>(
          `select u.username as owner, d.name, d.status, d.size, d.admin_password_ciphertext as secret
           from droplets d join users u on u.id = d.user_id order by d.name`,
        )
        expect(droplets).toHaveLength(12)
        // Step 16: no value is left under the run's key, which is gone.
        expect(droplets.filter((d) => d.secret !== null)).toEqual([])
        // Steps 12 and 13: user1's droplets stopped, the one started again active, at the size the trail showed.
        const resized = /droplet\.update: size "[^"]+" → "([^"]+)", status "stopped" → "active"/.exec(out)
        const started = /starts "([^"]+)" again/.exec(out)
        expect(droplets.filter((d) => d.owner === 'user1' && d.status !== 'stopped')).toEqual([
          expect.objectContaining({ name: started?.[1], status: 'active', size: resized?.[1] }),
        ])
        // The other users' droplets are as step 4 showed them, before the demo's changes: untouched.
        for (const owner of ['user2', 'user3']) {
          const shown = new RegExp(`^ {3}${owner} +4 droplets \\((.*)\\)$`, 'm').exec(out)?.[1]
          const now: Record<string, number> = {}
          for (const d of droplets.filter((x) => x.owner === owner)) now[d.status] = (now[d.status] ?? 0) + 1
          expect(now).toEqual(statusCounts(shown ?? ''))
        }
        // Audit rows: those step 15 counted, and the one of step 16's change; user1's password set by a system scope
        // once (the second run), its hash redacted.
        const counted = Number(/Rows per table: audit_logs (\d+)/.exec(out)?.[1])
        expect(await query(`select count(*)::int as n from audit_logs`)).toEqual([{ n: counted + 1 }])
        expect(
          await query(`select actor_role, changes from audit_logs where action = 'user.update' order by created_at`),
        ).toEqual([{ actor_role: 'system', changes: { passwordHash: { redacted: true } } }])

        // With the chain turned on by its owner beforehand, a run verifies it and leaves it as it was.
        const { enabledAt } = await db.audit.enableHashChain()
        const third = await runDemo(testDb.url)
        expect(third.stderr).toBe('')
        expect(third.code).toBe(0)
        expect(line(third.stdout, '9. ')).toMatch(/^9\. user1 was there before this run/)
        expect(line(third.stdout, '13. ')).toContain('The hash chain was turned on for this database before')
        expect(line(third.stdout, 'A user sees only')).toMatch(
          /Hash chain: the \d+ rows written since it was turned on are intact/,
        )
        expect(await db.audit.verify()).toMatchObject({ enabled: true, ok: true })
        const [head] = await query<{ enabled_at: Date }>(`select enabled_at from wincloud_audit_chain`)
        expect(head?.enabled_at).toEqual(enabledAt)
      } finally {
        await db.close()
      }
    } finally {
      await testDb.drop()
    }
  })
})
