/**
 * The quick-start demo: `npm run demo`.
 *
 * Starts an embedded PostgreSQL (or uses DATABASE_URL when set), migrates, seeds, lists, eager-loads, shows what
 * invalid input and a duplicate account look like, and cleans up after itself.
 *
 * In your own code, import from '@wincloud/data' instead of '../src/index.js'.
 */
import { ConflictError, createDatabase, Droplet, User, ValidationError, type Database } from '../src/index.js'

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

  const seeded = await db.seed.development({ users: 3, dropletsPerUser: 4 })
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
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL
  const db = await createDatabase(url ? { connection: url } : {})
  try {
    await story(db)
  } finally {
    await db.close()
  }
  say(`9. Closed${db.embedded ? ': the embedded server is stopped and its files are deleted' : ''}. Done.`)
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
})
