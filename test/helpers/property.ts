import fc from 'fast-check'
import { User, type Database } from '../../src/index.js'

/** `npm run test:deep` sets this: property suites run ten times as many cases. */
export const DEEP = process.env.WINCLOUD_TEST_DEEP === '1'

/** A property's number of runs: `n` by default, ten times that in deep runs. */
export const runs = (n: number): number => Math.ceil(DEEP ? n * 10 : n)

/** The seed a suite draws its dataset from: WINCLOUD_PROPERTY_SEED to replay one, else a fresh one. */
export const datasetSeed = (): number =>
  process.env.WINCLOUD_PROPERTY_SEED
    ? Number(process.env.WINCLOUD_PROPERTY_SEED)
    : Math.floor(Math.random() * 0x7fffffff)

/** Runs a property; a failure names the dataset seed, so it can be replayed with WINCLOUD_PROPERTY_SEED. */
export async function checkProperty<T>(property: fc.IAsyncProperty<T>, numRuns: number, seed: number): Promise<void> {
  try {
    await fc.assert(property, { numRuns })
  } catch (error) {
    if (error instanceof Error) error.message = `[dataset WINCLOUD_PROPERTY_SEED=${seed}] ${error.message}`
    throw error
  }
}

/** Inserts `user0…userN` with the given ids; the one at `adminIndex` is an admin. */
export async function insertUsers(db: Database, ids: readonly string[], adminIndex: number): Promise<void> {
  await db
    .model(User)
    .query()
    .insert(
      ids.map((id, i) => ({
        id,
        email: `user${i}@example.com`,
        username: `user${i}`,
        passwordHash: 'x',
        role: i === adminIndex ? 'admin' : 'user',
      })),
    )
}
