/**
 * The quick-start demo: `npm run demo`.
 *
 * Starts an embedded PostgreSQL (or uses DATABASE_URL when set), migrates, seeds, lists, eager-loads, shows what
 * invalid input and a duplicate account look like, walks pages, changes droplets in bulk, prints the audit trail of
 * what it did, and cleans up after itself.
 *
 * In your own code, import from '@wincloud/data' instead of '../src/index.js'.
 */
import { randomBytes } from 'node:crypto'
import {
  AuditLog,
  ConflictError,
  createDatabase,
  Droplet,
  NotFoundError,
  User,
  ValidationError,
  type Database,
} from '../src/index.js'

const say = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}

async function story(db: Database): Promise<void> {
  say(`1. Connected to ${db.embedded ? 'an embedded PostgreSQL' : 'PostgreSQL'} at ${db.connectionInfo}.`)
  const { rows } = await db.knex.raw<{ rows: { version: string }[] }>(
    "select current_setting('server_version') as version",
  )
  say(`   Server version ${rows[0]?.version}.`)

  const migrated = await db.migrate.latest()
  say(
    `2. Migrations: ${migrated.migrations.length ? `applied ${migrated.migrations.join(', ')}` : 'already up to date'}.`,
  )

  // The demo picks the sample users' password so it can log in as one of them below.
  const userPassword = randomBytes(12).toString('base64url')
  const seeded = await db.seed.development({ users: 3, dropletsPerUser: 4, userPassword })
  say(
    `3. Seeded ${seeded.admin.created ? 'a new' : 'the existing'} admin (${seeded.admin.email}), ` +
      `${seeded.usersCreated} users and ${seeded.dropletsCreated} droplets.`,
  )
  if (seeded.admin.generatedPassword) {
    say(`   The admin's password was generated for this database and returned once; it is not printed here.`)
  }

  say('4. Droplets per user:')
  const users = await db.model(User).query().where('role', 'user').withGraphFetched('droplets').orderBy('username')
  for (const user of users) {
    const byStatus = new Map<string, number>()
    for (const droplet of user.droplets ?? []) byStatus.set(droplet.status, (byStatus.get(droplet.status) ?? 0) + 1)
    const summary = [...byStatus].map(([status, n]) => `${n} ${status}`).join(', ')
    say(`   ${user.username.padEnd(6)} ${String(user.droplets?.length ?? 0).padStart(2)} droplets (${summary})`)
  }

  const droplet = await db
    .model(Droplet)
    .query()
    .where('status', 'active')
    .withGraphFetched('owner')
    .orderBy('name')
    .first()
    .throwIfNotFound()
  say(
    `5. Eager loading: droplet "${droplet.name}" in ${droplet.region} (${droplet.ipAddress}) belongs to ` +
      `${droplet.owner?.username}; its JSON has no password hash: ${!JSON.stringify(droplet).includes('passwordHash')}.`,
  )

  try {
    await db
      .model(Droplet)
      .query()
      .insert({ userId: droplet.userId, name: '', region: 'New York 3', size: 's-1vcpu-2gb' })
  } catch (error) {
    if (!(error instanceof ValidationError)) throw error
    say(`6. An invalid droplet is refused before any SQL runs (${error.code}, HTTP ${error.httpStatus}):`)
    for (const detail of error.details) say(`   - ${detail.field}: ${detail.message}`)
  }

  try {
    await db
      .model(User)
      .query()
      .insert({ email: seeded.admin.email.toUpperCase(), username: 'someone-else', passwordHash: 'x' })
  } catch (error) {
    if (!(error instanceof ConflictError)) throw error
    say(
      `7. A second account with the admin's email in capitals is a ConflictError (HTTP ${error.httpStatus}) ` +
        `naming ${error.constraint} on ${error.columns.join(', ')}.`,
    )
  }

  const again = await db.seed.development({ users: 3, dropletsPerUser: 4 })
  say(
    `8. Seeding again is a no-op: ${again.usersCreated} users and ${again.dropletsCreated} droplets created, ` +
      `admin created: ${again.admin.created}.`,
  )

  // Access control: every request runs in the scope of its actor.
  const user1 = await db.auth.login('USER1@wincloud.test', userPassword, { ip: '198.51.100.7' })
  const admin = await db.model(User).query().findById(seeded.admin.id).throwIfNotFound()
  const asAdmin = db.scope(admin, { requestId: 'demo-1' })
  const asUser1 = db.scope(user1, { ip: '198.51.100.7', requestId: 'demo-2' })
  say(`9. ${user1.username} logged in by email (case-insensitive); scrypt hash checked, no password stored in plain.`)
  say(
    `   Admin's view: ${await asAdmin.repo(Droplet).count()} droplets. ` +
      `${user1.username}'s view: ${await asUser1.repo(Droplet).count()} droplets.`,
  )
  const running = await asUser1.repo(Droplet).list({
    filter: { status: { in: ['active', 'building'] }, name: { ilike: { startsWith: 'USER1-' } } },
    sort: ['-createdAt'],
    limit: 5,
  })
  say(`   ${user1.username}'s active or building droplets, newest first: ${running.map((d) => d.name).join(', ')}.`)
  const someoneElses = await asAdmin.repo(Droplet).list({ filter: { userId: { ne: user1.id } }, limit: 1 })
  try {
    await asUser1.repo(Droplet).getById(someoneElses[0]!.id)
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error
    say(
      `10. ${user1.username} asking for someone else's droplet gets ${error.name} (HTTP ${error.httpStatus}), ` +
        `exactly as for a droplet that does not exist.`,
    )
  }
  const widened = await asUser1
    .repo(Droplet)
    .count({ or: [{ userId: someoneElses[0]!.userId }, { status: 'stopped' }] })
  say(`    A filter naming another user's id inside an "or" still counts only ${user1.username}'s rows: ${widened}.`)

  // Pagination: the admin walks every droplet by cursor, five at a time, newest first.
  const walked: string[] = []
  let cursor: string | undefined
  let pages = 0
  do {
    const page = await asAdmin
      .repo(Droplet)
      .list({ sort: ['-createdAt', 'name'], page: cursor === undefined ? { size: 5 } : { size: 5, after: cursor } })
    walked.push(...page.items.map((d) => d.name))
    pages += 1
    cursor = page.pageInfo.hasNextPage ? (page.pageInfo.endCursor ?? undefined) : undefined
  } while (cursor !== undefined)
  const byNumber = await asAdmin.repo(Droplet).list({ sort: ['name'], page: { number: 2, size: 5, exactTotal: true } })
  say(
    `11. A cursor walk over all droplets, 5 a page: ${pages} pages, ${walked.length} droplets, ` +
      `${new Set(walked).size} distinct. Page 2 by number: ${byNumber.items.map((d) => d.name).join(', ')} ` +
      `(${byNumber.total} in all, ${byNumber.totalPages} pages).`,
  )

  // Bulk: user1 stops their droplets and, by mistake, two of someone else's; those are "not found", untouched.
  const mine = await asUser1.repo(Droplet).list({ limit: 100 })
  const others = await asAdmin.repo(Droplet).list({ filter: { userId: { ne: user1.id } }, limit: 2 })
  const bulk = await asUser1.repo(Droplet).bulkUpdate(
    [...mine, ...others].map((d) => d.id),
    { status: 'stopped' },
  )
  const stillTheirs = await asAdmin.repo(Droplet).count({ id: { in: others.map((d) => d.id) }, status: 'stopped' })
  say(
    `12. A bulk status change by ${user1.username}: ${bulk.updated.length} updated in one statement, ` +
      `${bulk.notFound.length} not found; stopped among the other users' two: ${stillTheirs} ` +
      `(of ${others.filter((d) => d.status === 'stopped').length} before).`,
  )

  // Audit: every change above left a row, written by the same statement as the change. user1 reads their own trail.
  const chain = await db.audit.enableHashChain()
  await asUser1.repo(Droplet).update(mine[0]!.id, { status: 'active', name: `${mine[0]!.name}-renamed` })
  await asUser1.audit.record('droplet.console_opened', { entityType: 'droplet', entityId: mine[0]!.id })
  await db.auth.login('user1', 'not-the-password').catch(() => undefined)
  const trail = await asUser1.repo(AuditLog).list({ sort: ['-createdAt'], page: { size: 5 } })
  say(`13. ${user1.username}'s last five audit entries, newest first (they see only their own):`)
  for (const entry of trail.items) {
    const changed = Object.entries(entry.changes)
      .map(([field, change]) => `${field} ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`)
      .join(', ')
    const extra = entry.action.startsWith('auth.') ? ` (${String(entry.metadata.reason)})` : ''
    say(`    ${entry.action}${extra}${changed ? `: ${changed}` : ''}`)
  }
  const total = await asAdmin.repo(AuditLog).count()
  const verified = await db.audit.verify()
  say(
    `    The admin sees all ${total} entries. Hash chain on since ${chain.enabledAt.toISOString()}: ` +
      `${verified.checked} chained rows verified, ${verified.ok ? 'intact' : `BROKEN (${verified.problem?.kind})`}.`,
  )
  try {
    await db.knex.raw(`delete from audit_logs`)
  } catch {
    say(`    Deleting audit rows, even on the application's own connection, is refused by the database.`)
  }

  // Encryption: a droplet's Windows administrator password is stored as an envelope bound to its row.
  const secret = randomBytes(9).toString('base64url')
  await asUser1.repo(Droplet).update(mine[0]!.id, { adminPassword: secret })
  const atRest = await db.knex.raw<{ rows: { text: string }[] }>(
    'select admin_password_ciphertext as text from droplets where id = ?',
    [mine[0]!.id],
  )
  const stored = atRest.rows[0]!.text
  const readBack = (await asUser1.repo(Droplet).getById(mine[0]!.id)).adminPassword
  say(
    `14. An administrator password at rest: "${stored.slice(0, 24)}…" (${stored.length} characters, ` +
      `plaintext in it: ${stored.includes(secret)}); read back through the repository: ${readBack === secret ? 'the same' : 'DIFFERENT'}.`,
  )

  // Health: answered on a connection of its own, within its timeout whatever the database does.
  const health = await db.health({ timeoutMs: 1_000, exactCounts: true, keyUsage: true })
  const tables = Object.entries(health.tables).map(([name, t]) => `${name} ${t.rows}`)
  say(
    `15. Health: ${health.status} in ${health.latencyMs.toFixed(1)} ms, PostgreSQL ${health.database.serverVersion}, ` +
      `pool ${health.pool.used} used / ${health.pool.free} free of ${health.pool.max}; rows: ${tables.join(', ')}; ` +
      `values per key: ${JSON.stringify(health.encryption?.keyUsage ?? {})}.`,
  )
  const stats = db.stats()
  const busiest = stats.queries[0]
  say(
    `    ${stats.totals.calls} queries timed in ${stats.queries.length} shapes; the most time went to ` +
      `"${busiest?.sql.slice(0, 60) ?? ''}…" (${busiest?.calls ?? 0} calls, p95 ${busiest?.p95Ms ?? 0} ms).`,
  )
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL
  // Demo keys, made for this run: a real host reads them from its secret store.
  const encryption = { keys: { demo: randomBytes(32).toString('base64') }, current: 'demo' }
  const db = await createDatabase(url ? { connection: url, encryption } : { encryption })
  try {
    await story(db)
  } finally {
    await db.close()
  }
  say(`16. Closed${db.embedded ? ': the embedded server is stopped and its files are deleted' : ''}. Done.`)
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
})
