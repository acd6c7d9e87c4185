import { randomBytes } from 'node:crypto'
import type { Knex } from 'knex'
import { hashPassword, type PasswordHashOptions } from '../auth/passwords.js'
import { ValidationError } from '../errors/index.js'
import { type Droplet, DROPLET_STATUSES } from '../models/droplet.js'
import { type User } from '../models/user.js'

/**
 * Options of `db.seed.development()`.
 *
 * @example
 * ```ts
 * const result = await db.seed.development({ users: 3, dropletsPerUser: 2, adminPassword: process.env.ADMIN_PASSWORD })
 * ```
 */
export interface SeedOptions {
  /** The admin's email. Default `admin@wincloud.test`. */
  adminEmail?: string
  /** The admin's username. Default `admin`. */
  adminUsername?: string
  /** The admin's password; a fresh random one is generated (and returned) when omitted. */
  adminPassword?: string
  /** How many sample users (`user1` … `userN`). Default 3, at most 1,000. */
  users?: number
  /** Droplets per sample user. Default 3, at most 100. */
  dropletsPerUser?: number
  /** The sample users' password; a fresh random one per user is generated (and returned) when omitted. */
  userPassword?: string
  /** scrypt settings for the seeded hashes (lower the cost in tests). */
  passwordHash?: PasswordHashOptions
}

/**
 * A seeded account. `generatedPassword` is there only when this call created the account and made up its
 * password, the one time it can be shown.
 *
 * @example
 * ```ts
 * const { admin } = await db.seed.development()
 * if (admin.generatedPassword) console.log(`admin password: ${admin.generatedPassword}`)
 * ```
 */
export interface SeededAccount {
  readonly id: string
  readonly email: string
  readonly username: string
  readonly created: boolean
  readonly generatedPassword?: string
}

/**
 * What `db.seed.development()` did. Running it again creates nothing more: every `created` is false and the counts
 * are zero.
 *
 * @example
 * ```ts
 * const { usersCreated, dropletsCreated } = await db.seed.development()
 * ```
 */
export interface SeedResult {
  readonly admin: SeededAccount
  readonly users: readonly SeededAccount[]
  readonly usersCreated: number
  readonly dropletsCreated: number
}

const REGIONS = ['nyc3', 'ams3', 'fra1', 'sgp1', 'lon1'] as const
const SIZES = ['s-1vcpu-2gb', 's-2vcpu-4gb', 's-4vcpu-8gb'] as const
const ROLES = ['web', 'sql', 'rdp', 'build', 'files'] as const

function count(value: number | undefined, field: string, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new ValidationError(`${field} must be an integer from 0 to ${max}.`, [
      { field, message: `must be an integer from 0 to ${max}`, keyword: 'range' },
    ])
  }
  return value
}

const newPassword = (): string => randomBytes(18).toString('base64url')

/**
 * Seeds a development database: an admin, sample users and their droplets. Idempotent: accounts are found by
 * email (case-insensitive) and droplets by owner and name, so a second run changes nothing. Runs in one
 * transaction.
 *
 * @internal
 */
export async function seedDevelopment(
  knex: Knex,
  BoundUser: typeof User,
  BoundDroplet: typeof Droplet,
  options: SeedOptions = {},
): Promise<SeedResult> {
  const userCount = count(options.users, 'users', 1_000, 3)
  const dropletsPerUser = count(options.dropletsPerUser, 'dropletsPerUser', 100, 3)
  const hashOptions = options.passwordHash

  return knex.transaction(async (trx) => {
    const ensureUser = async (
      email: string,
      username: string,
      role: string,
      password: string | undefined,
    ): Promise<SeededAccount> => {
      const existing = await BoundUser.query(trx).whereRaw('lower(email) = lower(?)', [email]).first()
      if (existing) return { id: existing.id, email: existing.email, username: existing.username, created: false }
      const generated = password === undefined ? newPassword() : undefined
      const user = await BoundUser.query(trx).insert({
        email,
        username,
        role,
        passwordHash: await hashPassword(password ?? generated!, hashOptions),
      })
      const account = { id: user.id, email, username, created: true }
      return generated === undefined ? account : { ...account, generatedPassword: generated }
    }

    const admin = await ensureUser(
      options.adminEmail ?? 'admin@wincloud.test',
      options.adminUsername ?? 'admin',
      'admin',
      options.adminPassword,
    )
    const users: SeededAccount[] = []
    for (let i = 1; i <= userCount; i++) {
      users.push(await ensureUser(`user${i}@wincloud.test`, `user${i}`, 'user', options.userPassword))
    }

    let dropletsCreated = 0
    if (users.length > 0 && dropletsPerUser > 0) {
      const existing = await BoundDroplet.query(trx)
        .select('user_id', 'name')
        .whereIn(
          'user_id',
          users.map((u) => u.id),
        )
      const have = new Set(existing.map((d) => `${d.userId}/${d.name}`))
      const rows: Partial<Droplet>[] = []
      users.forEach((user, u) => {
        for (let d = 0; d < dropletsPerUser; d++) {
          const name = `${user.username}-${ROLES[d % ROLES.length]}-${Math.floor(d / ROLES.length) + 1}`
          if (have.has(`${user.id}/${name}`)) continue
          const status = DROPLET_STATUSES[(u + d) % 3]!
          rows.push({
            userId: user.id,
            name,
            region: REGIONS[(u + d) % REGIONS.length]!,
            size: SIZES[d % SIZES.length]!,
            status,
            // Documentation addresses (RFC 5737): sample data only.
            ipAddress: status === 'active' ? `203.0.113.${((u * 7 + d) % 250) + 2}` : null,
          })
        }
      })
      if (rows.length > 0) await BoundDroplet.query(trx).insert(rows)
      dropletsCreated = rows.length
    }

    return { admin, users, usersCreated: users.filter((u) => u.created).length, dropletsCreated }
  })
}
