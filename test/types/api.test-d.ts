// Type tests: this file only has to compile (tsc -p tsconfig.json); it is never run.
import {
  createDatabase,
  Droplet,
  User,
  ValidationError,
  type Database,
  type DatabaseConfig,
  type DropletStatus,
  type SeedResult,
} from '../../src/index.js'

export async function typeTests(): Promise<void> {
  const db: Database = await createDatabase({ connection: 'postgres://app@127.0.0.1/app', pool: { max: 5 } })

  // db.model keeps the model's own type, so queries return instances of it.
  const BoundDroplet: typeof Droplet = db.model(Droplet)
  const droplets: Droplet[] = await BoundDroplet.query().where('status', 'active')
  const status: DropletStatus | undefined = droplets[0]?.status
  void status
  const user: User | undefined = await db.model(User).query().findById('id')
  void user?.passwordHash

  // @ts-expect-error an unknown status is not a DropletStatus
  const wrong: DropletStatus = 'running'
  void wrong

  // @ts-expect-error pool.max is a number
  const badConfig: DatabaseConfig = { pool: { max: '10' } }
  void badConfig

  // @ts-expect-error the Redis cache is not part of this version's config
  const laterConfig: DatabaseConfig = { cache: { url: 'redis://127.0.0.1:6379' } }
  void laterConfig

  // @ts-expect-error a replica is a URL or connection fields
  const badReplica: DatabaseConfig = { replicas: [5432] }
  void badReplica

  const seeded: SeedResult = await db.seed.development({ users: 1 })
  // @ts-expect-error seed results are read-only
  seeded.usersCreated = 2

  const error = new ValidationError('x', [{ field: 'name', message: 'is too short' }])
  const field: string | undefined = error.details[0]?.field
  void field
  await db.close()
}
