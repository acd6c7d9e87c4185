import type { Knex } from 'knex'
import type { Model } from 'objection'
import { Droplet } from '../models/droplet.js'
import { User } from '../models/user.js'
import { seedDevelopment, type SeedOptions, type SeedResult } from '../seed/development.js'
import { withDataErrors } from './migrator.js'

/**
 * `db.seed`: data for development databases.
 *
 * @example
 * ```ts
 * const { admin } = await db.seed.development()
 * ```
 */
export interface Seeder {
  /**
   * Creates an admin, sample users and droplets; idempotent. The admin's password is the caller's, or generated
   * and returned once as `admin.generatedPassword`: never a constant.
   */
  development(options?: SeedOptions): Promise<SeedResult>
}

/**
 * `db.seed` on `knex`, with `User` and `Droplet` bound by `bind` (the database's `model()`).
 *
 * @internal
 */
export function createSeeder(knex: Knex, bind: <M extends typeof Model>(modelClass: M) => M): Seeder {
  return Object.freeze({
    development: (options?: SeedOptions) =>
      withDataErrors(() => seedDevelopment(knex, bind(User), bind(Droplet), options)),
  })
}
