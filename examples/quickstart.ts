/**
 * The quick-start demo: `npm run demo`.
 *
 * Migrates, seeds sample users and droplets, lists, eager-loads, shows what invalid input and a duplicate account
 * look like, logs in, walks pages, changes droplets in bulk, prints the audit trail of what it did, encrypts a
 * droplet's Windows administrator password, and reports the database's health.
 *
 * Where it runs, and what it leaves behind:
 *
 * - Without DATABASE_URL it starts an embedded PostgreSQL of its own, does everything (the audit hash chain
 *   included) and deletes the server's files at the end: nothing is left.
 * - With DATABASE_URL it works on that database, which it did not create, so it first lists what it will change
 *   there for good (migrations, the sample accounts and droplets, user1's password and droplets, audit rows), and
 *   changes nothing else. It never turns the audit hash chain on there (that is for good too): it verifies the
 *   chain when it is on already, and otherwise says how to try it. It can run again and again on the same
 *   database: when user1 is there already, it gives user1 a new random password for the run, so it can log in.
 *
 * In your own code, import from '@wincloud/data' (and '@wincloud/data/passwords') instead of '../src/…'.
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
import { hashPassword } from '../src/passwords.js'

const say = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}

/** Thrown to roll a transaction back. */
class RolledBack extends Error {}

/** Before any change to a database the demo did not create: what it will change there, for good. */
function announceLastingChanges(): void {
  say('   DATABASE_URL names a database this demo did not create: the changes it makes there stay. They are:')
  say('   - the library migrations still pending, if any (step 2);')
  say('   - the sample accounts admin@wincloud.test and user1@… to user3@wincloud.test, with 4 droplets each,')
  say('     where missing (step 3); if user1 was there already, a new random password for it, not printed (step 9);')
  say("   - user1's droplets stopped (step 12), one of them started and resized (step 13), and its Windows")
  say('     administrator password set (step 14), then cleared again (step 16);')
  say('   - an audit row for each of these changes and for each login attempt (the audit log is append-only).')
  say('   The audit hash chain is not turned on here: turning it on is for good (step 13 says how to try it).')
}

async function story(db: Database): Promise<void> {
  const throwaway = db.embedded
  say(
    throwaway
      ? `1. Connected to an embedded PostgreSQL at ${db.connectionInfo}, started for this run and deleted at the end.`
      : `1. Connected to the PostgreSQL of DATABASE_URL, at ${db.connectionInfo}.`,
  )
  const { rows } = await db.knex.raw<{ rows: { version: string }[] }>(
    "select current_setting('server_version') as version",
  )
  say(`   Server version ${rows[0]?.version}.`)
  if (!throwaway) announceLastingChanges()

  const migrated = await db.migrate.latest()
  say(
    `2. Migrations: ${migrated.migrations.length ? `applied ${migrated.migrations.join(', ')}` : 'already up to date'}.`,
  )

  // The demo picks the sample users' password so it can log in as one of them below. It is made up for this run
  // and never printed; step 9 gives it to user1 when user1 was seeded by an earlier run.
  const userPassword = randomBytes(12).toString('base64url')
  const seeded = await db.seed.development({ users: 3, dropletsPerUser: 4, userPassword })
  const sampleIds = seeded.users.map((u) => u.id)
  say(
    `3. Sample data: the admin ${seeded.admin.email} (${seeded.admin.created ? 'new' : 'already there'}), ` +
      `users ${seeded.users.map((u) => u.username).join(', ')} (${seeded.usersCreated} new) ` +
      `and 4 droplets each (${seeded.dropletsCreated} new).`,
  )
  if (seeded.admin.generatedPassword) {
    say(`   The admin's password was generated for this database and returned once; it is not printed here.`)
  }

  say("4. The sample users' droplets:")
  const users = await db.model(User).query().whereIn('id', sampleIds).withGraphFetched('droplets').orderBy('username')
  for (const user of users) {
    const byStatus = new Map<string, number>()
    for (const droplet of user.droplets ?? []) byStatus.set(droplet.status, (byStatus.get(droplet.status) ?? 0) + 1)
    const summary = [...byStatus].map(([status, n]) => `${n} ${status}`).join(', ')
    say(`   ${user.username.padEnd(6)} ${String(user.droplets?.length ?? 0).padStart(2)} droplets (${summary})`)
  }

  const droplet = await db
    .model(Droplet)
    .query()
    .whereIn('user_id', sampleIds)
    .where('status', 'active')
    .whereNotNull('ip_address')
    .withGraphFetched('owner')
    .orderBy('name')
    .first()
    .throwIfNotFound()
  const leaks = JSON.stringify(droplet).includes('passwordHash')
  say(
    `5. Eager loading: droplet "${droplet.name}" (${droplet.region}, ${droplet.ipAddress}) was fetched together with ` +
      `its owner, ${droplet.owner?.username}; its JSON, owner included, ` +
      `${leaks ? 'CONTAINS' : 'leaves out'} the owner's password hash.`,
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
      `7. A second account with the admin's email in capitals is refused with a ConflictError (HTTP ` +
        `${error.httpStatus}) naming the constraint ${error.constraint} on ${error.columns.join(', ')}: ` +
        `emails are unique whatever their case.`,
    )
  }

  const again = await db.seed.development({ users: 3, dropletsPerUser: 4 })
  say(
    `8. Seeding again changes nothing: ${again.usersCreated} users and ${again.dropletsCreated} droplets created, ` +
      `admin created: ${again.admin.created ? 'yes' : 'no'}.`,
  )

  // Access control: every request runs in the scope of its actor.
  const sample1 = seeded.users[0]!
  if (!sample1.created) {
    // user1 has the password of an earlier run, which nobody knows: give it this run's, as a maintenance job would.
    say(`9. user1 was there before this run, so it first gets a new random password (not printed) to log in with.`)
    await db
      .system('demo: a password for user1 for this run')
      .repo(User)
      .update(sample1.id, { passwordHash: await hashPassword(userPassword) })
  }
  const user1 = await db.auth.login('USER1@wincloud.test', userPassword, { ip: '198.51.100.7' })
  const admin = await db.model(User).query().findById(seeded.admin.id).throwIfNotFound()
  const asAdmin = db.scope(admin, { requestId: 'demo-1' })
  const asUser1 = db.scope(user1, { ip: '198.51.100.7', requestId: 'demo-2' })
  say(
    `${sample1.created ? '9.' : '  '} ${user1.username} logged in as USER1@wincloud.test (emails match whatever ` +
      `their case); the password was checked against its scrypt hash, the only form in which it is stored.`,
  )
  const ofSample = { userId: { in: sampleIds } }
  say(
    `   Counting the sample droplets: the admin sees ${await asAdmin.repo(Droplet).count(ofSample)}, ` +
      `${user1.username} sees ${await asUser1.repo(Droplet).count(ofSample)} (only their own).`,
  )
  const running = await asUser1.repo(Droplet).list({
    filter: { status: { in: ['active', 'building'] }, name: { ilike: { startsWith: 'USER1-' } } },
    sort: ['-createdAt'],
    limit: 5,
  })
  say(
    `   ${user1.username}'s active or building droplets, newest first: ` +
      `${running.map((d) => d.name).join(', ') || 'none'}.`,
  )
  const othersOf = { userId: { in: sampleIds.filter((id) => id !== user1.id) } }
  const someoneElses = await asAdmin.repo(Droplet).list({ filter: othersOf, sort: ['name'], limit: 1 })
  try {
    await asUser1.repo(Droplet).getById(someoneElses[0]!.id)
  } catch (error) {
    if (!(error instanceof NotFoundError)) throw error
    say(
      `10. ${user1.username} asking for another user's droplet by its id gets ${error.name} (HTTP ` +
        `${error.httpStatus}), exactly as for a droplet that does not exist.`,
    )
  }
  const widened = await asUser1
    .repo(Droplet)
    .count({ or: [{ userId: someoneElses[0]!.userId }, { status: 'stopped' }] })
  say(
    `    ${user1.username} counting droplets "of ${users.find((u) => u.id === someoneElses[0]!.userId)?.username} ` +
      `or stopped" gets ${widened}: ` +
      `only their own stopped ones, as their scope applies to the whole filter.`,
  )

  // Pagination: the admin walks the sample droplets by cursor, five at a time, newest first.
  const walked: string[] = []
  let cursor: string | undefined
  let pages = 0
  do {
    const page = await asAdmin.repo(Droplet).list({
      filter: ofSample,
      sort: ['-createdAt', 'name'],
      page: cursor === undefined ? { size: 5 } : { size: 5, after: cursor },
    })
    walked.push(...page.items.map((d) => d.name))
    pages += 1
    cursor = page.pageInfo.hasNextPage ? (page.pageInfo.endCursor ?? undefined) : undefined
  } while (cursor !== undefined)
  const byNumber = await asAdmin
    .repo(Droplet)
    .list({ filter: ofSample, sort: ['name'], page: { number: 2, size: 5, exactTotal: true } })
  say(
    `11. Pages of the sample droplets, 5 a page. By cursor: ${pages} pages, ${walked.length} droplets, ` +
      `${new Set(walked).size} of them distinct. By number, sorted by name, page 2 of ${byNumber.totalPages} ` +
      `(${byNumber.total} in all): ${byNumber.items.map((d) => d.name).join(', ')}.`,
  )

  // Bulk: user1 stops their droplets and, by mistake, two of someone else's; those are "not found", untouched.
  const mine = await asUser1.repo(Droplet).list({ sort: ['name'], limit: 100 })
  const others = await asAdmin.repo(Droplet).list({ filter: othersOf, sort: ['name'], limit: 2 })
  const bulk = await asUser1.repo(Droplet).bulkUpdate(
    [...mine, ...others].map((d) => d.id),
    { status: 'stopped' },
  )
  const before = others.map((d) => d.status).join(' and ')
  const after = (await Promise.all(others.map((d) => asAdmin.repo(Droplet).getById(d.id))))
    .map((d) => d.status)
    .join(' and ')
  say(
    `12. Bulk: ${user1.username} asked to stop ${mine.length + others.length} droplets at once, their own ` +
      `${mine.length} and ${others.length} of other users. ${bulk.updated.length} of theirs were set to stopped in ` +
      `one statement (${mine.filter((d) => d.status !== 'stopped').length} had another status before). ` +
      `The other users' ${bulk.notFound.length} came back as not found and ` +
      `${after === before ? `stayed as they were: ${before}` : `CHANGED: ${before}, now ${after}`}.`,
  )

  // Audit: every change above left a row, written by the same statement as the change. user1 reads their own trail.
  const chainWasOn = (await db.audit.head()) !== undefined
  if (throwaway) {
    await db.audit.enableHashChain()
    say('13. Audit. The demo turns the hash chain on (for good, which is fine here: this database is thrown away).')
  } else if (chainWasOn) {
    say('13. Audit. The hash chain was turned on for this database before; the demo verifies it below.')
  } else {
    say(
      '13. Audit. The hash chain is off on this database, and the demo leaves it off, since turning it on is for ' +
        'good. To see it, run the demo without DATABASE_URL, or turn it on yourself: ' +
        'wincloud-data audit enable-chain.',
    )
  }
  const first = mine[0]!
  const size = first.size === 's-2vcpu-4gb' ? 's-1vcpu-2gb' : 's-2vcpu-4gb'
  await asUser1.repo(Droplet).update(first.id, { status: 'active', size })
  await asUser1.audit.record('droplet.console_opened', { entityType: 'droplet', entityId: first.id })
  await db.auth.login('user1', 'not-the-password').catch(() => undefined)
  say(`    ${user1.username} starts "${first.name}" again and resizes it, opens its console (a custom audit event),`)
  say(`    and a login as ${user1.username} fails. ${user1.username}'s last five audit entries, newest first:`)
  const trail = await asUser1.repo(AuditLog).list({ sort: ['-createdAt'], page: { size: 5 } })
  for (const entry of trail.items) {
    const changed = Object.entries(entry.changes)
      .map(([field, change]) => `${field} ${JSON.stringify(change.from)} → ${JSON.stringify(change.to)}`)
      .join(', ')
    const extra = entry.action.startsWith('auth.') ? ` (${String(entry.metadata.reason)})` : ''
    say(`      ${entry.action}${extra}${changed ? `: ${changed}` : ''}`)
  }
  const total = await asAdmin.repo(AuditLog).count()
  const verified = await db.audit.verify()
  const chainNote = !verified.enabled
    ? ''
    : verified.ok
      ? ` Hash chain: the ${verified.checked} rows written since it was turned on are intact, and the rows from ` +
        `before it unchanged.`
      : ` Hash chain: BROKEN (${verified.problem?.kind}: ${verified.problem?.message}).`
  say(`    A user sees only the entries where they are the actor; the admin sees all ${total}.${chainNote}`)
  try {
    // In a transaction rolled back whatever happens: a delete that got through would not be kept.
    await db.knex.transaction(async (trx) => {
      await trx.raw(`delete from audit_logs`)
      throw new RolledBack()
    })
  } catch (error) {
    say(
      error instanceof RolledBack
        ? `    A delete from audit_logs was NOT refused here; it was rolled back.`
        : `    A delete from audit_logs, on the demo's own connection, is refused by the database itself: ` +
            `"${(error as Error).message.replace(/^delete from audit_logs - /, '')}".`,
    )
  }

  // Encryption: a droplet's Windows administrator password is stored as an envelope bound to its row.
  const secret = randomBytes(9).toString('base64url')
  await asUser1.repo(Droplet).update(first.id, { adminPassword: secret })
  const atRest = await db.knex.raw<{ rows: { text: string }[] }>(
    'select admin_password_ciphertext as text from droplets where id = ?',
    [first.id],
  )
  const stored = atRest.rows[0]!.text
  const readBack = (await asUser1.repo(Droplet).getById(first.id)).adminPassword
  say(
    `14. Encryption: ${user1.username} sets the Windows administrator password of "${first.name}" (a secret of ` +
      `the droplet's server, not an account here). The droplets table stores "${stored.slice(0, 24)}…" ` +
      `(${stored.length} characters, ` +
      `${stored.includes(secret) ? 'the password IN CLEAR in it' : 'the password encrypted with the key "demo"'}); ` +
      `read back through the repository, it is ${readBack === secret ? 'the password again' : 'DIFFERENT'}.`,
  )

  // Health: answered on a connection of its own, within its timeout whatever the database does.
  const health = await db.health({ timeoutMs: 1_000, exactCounts: true, keyUsage: true })
  const tables = Object.entries(health.tables).map(([name, t]) => `${name} ${t.rows}`)
  const keys = Object.entries(health.encryption?.keyUsage ?? {}).map(([key, n]) => `"${key}" ${n}`)
  say(
    `15. Health: ${health.status}, answered in ${health.latencyMs.toFixed(1)} ms by PostgreSQL ` +
      `${health.database.serverVersion}; connection pool ${health.pool.used} in use, ${health.pool.free} idle, ` +
      `at most ${health.pool.max}. Rows per table: ${tables.join(', ')}. ` +
      `Encrypted values per key: ${keys.join(', ') || 'none'}.`,
  )
  const stats = db.stats()
  const busiest = stats.queries[0]
  const calls = busiest?.calls ?? 0
  const p95 = (busiest?.p95Ms ?? 0).toFixed(1)
  say(
    `    The library timed ${stats.totals.calls} queries, ${stats.queries.length} distinct once their values are ` +
      `set aside; the most time went to "${busiest?.sql.slice(0, 60) ?? ''}…" ` +
      `(${calls === 1 ? `1 call, ${p95} ms` : `${calls} calls, 95% of them within ${p95} ms`}).`,
  )

  if (!throwaway) {
    // The key "demo" exists only in this process: a value under it would be unreadable once the run ends.
    await asUser1.repo(Droplet).update(first.id, { adminPassword: null })
    say(
      `16. "${first.name}"'s administrator password is cleared again: it was encrypted with this run's key, ` +
        `which ends with the run.`,
    )
  }
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL
  // A demo key, made for this run: a real host reads its keys from its secret store.
  const encryption = { keys: { demo: randomBytes(32).toString('base64') }, current: 'demo' }
  const db = await createDatabase(url ? { connection: url, encryption } : { encryption })
  try {
    await story(db)
  } finally {
    await db.close()
  }
  say(
    db.embedded
      ? '16. Closed: the embedded server is stopped and its files are deleted. Done.'
      : '    Closed. The database keeps the changes listed in step 1, and nothing else. Done.',
  )
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
})
