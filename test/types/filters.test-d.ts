// Type tests of typed filters and sorts: this file only has to compile (tsc -p tsconfig.json); it is never run.
import {
  AuditLog,
  BaseModel,
  Droplet,
  User,
  type Database,
  type Filter,
  type ListOptions,
  type SortKey,
  type UntypedFilter,
} from '../../src/index.js'

/** Exactly equal types (not merely assignable either way). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const expectType = <T extends true>(): T => true as T

/** A host's model, declared the way the guides show: the statics `as const`, the fields with their types. */
class Server extends BaseModel {
  static override tableName = 'servers'
  static override filterable = { name: 'string', cores: 'integer', retired: 'boolean', lastSeen: 'timestamp' } as const
  static override sortable = ['name', 'cores'] as const
  declare name: string
  declare cores: number
  declare retired: boolean
  declare lastSeen: Date | null
}

/** A host model whose statics are plain records: its filters stay untyped (checked at run time). */
class Legacy extends BaseModel {
  static override tableName = 'legacy'
  static override filterable: Readonly<Record<string, 'string'>> = { code: 'string' }
}

export async function filterTypeTests(db: Database, user: User): Promise<void> {
  const droplets = db.scope(user).repo(Droplet)
  const servers = db.scope(user).repo(Server)
  const users = db.scope(user).repo(User)

  // The editor offers exactly the filterable properties (and the groups) inside a filter.
  expectType<
    Equal<
      keyof Filter<typeof Droplet>,
      | 'id'
      | 'userId'
      | 'name'
      | 'region'
      | 'size'
      | 'status'
      | 'ipAddress'
      | 'createdAt'
      | 'updatedAt'
      | 'and'
      | 'or'
      | 'not'
    >
  >()
  // An encrypted property with a blind index can be filtered (by equality); one without cannot.
  expectType<
    Equal<
      Exclude<keyof Filter<typeof User>, keyof Filter<typeof Droplet>>,
      'email' | 'username' | 'role' | 'isActive' | 'apiToken'
    >
  >()
  expectType<Equal<SortKey<typeof Server>, 'name' | 'cores' | '-name' | '-cores'>>()

  // What is right compiles: values, operators of the type, groups, null where the field is nullable.
  await droplets.list({
    filter: {
      status: { in: ['active', 'building'] },
      or: [{ name: { ilike: { startsWith: 'web' } } }, { region: 'nyc3' }],
      not: { ipAddress: null },
      createdAt: { gte: '2026-01-01T00:00:00Z', lt: new Date() },
    },
    sort: ['-createdAt', 'name'],
    limit: 20,
  })
  await users.count({ apiToken: 'dop_v1_…', isActive: true })
  await servers.list({ filter: { cores: { between: [2, 8] }, lastSeen: { isNull: true } } })
  await db
    .scope(user)
    .repo(AuditLog)
    .list({ filter: { actorId: null }, sort: ['-createdAt'] })

  // @ts-expect-error a typo is not a filterable property
  await droplets.list({ filter: { stauts: 'active' } })
  // @ts-expect-error a status is one of the droplet statuses, not a number
  await droplets.count({ status: 42 })
  // @ts-expect-error nor any string
  await droplets.count({ status: 'running' })
  // @ts-expect-error adminPassword is encrypted without a blind index: not filterable
  await droplets.count({ adminPassword: 'x' })
  // @ts-expect-error ilike is for text, not numbers
  await servers.count({ cores: { ilike: { contains: '4' } } })
  // @ts-expect-error gt is not for booleans
  await servers.count({ retired: { gt: false } })
  // @ts-expect-error name is not nullable: no null
  await droplets.count({ name: null })
  // @ts-expect-error nor isNull
  await droplets.count({ name: { isNull: true } })
  // @ts-expect-error an encrypted property takes equality only
  await users.count({ apiToken: { in: ['a', 'b'] } })
  // @ts-expect-error ipAddress is filterable but not sortable
  await droplets.list({ sort: ['-ipAddress'] })
  // @ts-expect-error a typo in a sort
  await droplets.list({ sort: ['-colour'] })
  // @ts-expect-error groups are typed too
  await droplets.count({ or: [{ region: 'nyc3' }, { stauts: 'active' }] })

  // @ts-expect-error a filter is an object, not SQL text
  const text: Filter<typeof Droplet> = "status = 'active'"
  void text

  // Options written apart from the call are typed by the model they are for.
  const options: ListOptions<typeof Droplet> = { filter: { status: 'active' }, sort: ['-createdAt'] }
  await droplets.list(options)
  // @ts-expect-error options for users are not options for droplets
  await droplets.list({ filter: { username: 'alice' } } satisfies ListOptions<typeof User>)

  // Untyped where the compiler cannot know: `Filter` without a model, and models with plain-record statics.
  const loose: Filter = { anything: { eq: 1 } }
  const alsoLoose: UntypedFilter = loose
  await db
    .scope(user)
    .repo(Legacy)
    .list({ filter: { whatever: 'x' }, sort: ['-whatever'] })
  void alsoLoose
}
