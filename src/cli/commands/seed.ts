import { defineCommand, intOption } from '../command.js'
import { withDatabase } from '../with-database.js'

/**
 * `wincloud-data seed`: an admin, sample users and their droplets.
 *
 * @internal
 */
export const seedCommand = defineCommand({
  name: 'seed',
  summary: 'seed a development database (idempotent)',
  help: `Usage: wincloud-data seed [--users <n>] [--droplets-per-user <n>] [--url <url>]

Creates an admin (admin@wincloud.test), sample users and their droplets, unless they exist already.
The admin password is taken from WINCLOUD_ADMIN_PASSWORD, or generated and printed once when the admin is created.
Reads DATABASE_URL unless --url is given.`,
  options: { users: { type: 'string' }, 'droplets-per-user': { type: 'string' } },
  async run({ values, url, io }) {
    const users = intOption(values.users, 'users')
    const dropletsPerUser = intOption(values['droplets-per-user'], 'droplets-per-user')
    await withDatabase(url, async (db) => {
      const adminPassword = io.env.WINCLOUD_ADMIN_PASSWORD || undefined
      const result = await db.seed.development({
        ...(users === undefined ? {} : { users }),
        ...(dropletsPerUser === undefined ? {} : { dropletsPerUser }),
        ...(adminPassword === undefined ? {} : { adminPassword }),
      })
      io.out(`admin ${result.admin.email}: ${result.admin.created ? 'created' : 'already there'}`)
      if (result.admin.generatedPassword) io.out(`admin password (shown once): ${result.admin.generatedPassword}`)
      io.out(`users created: ${result.usersCreated}, droplets created: ${result.dropletsCreated}`)
    })
    return 'ok'
  },
})
