/**
 * The oracle property suites of scoped repositories (../helpers/scoped-oracle-suite.ts) on the library's `Droplet`,
 * with row-level security off and on:
 *
 * 1. list/count: for random actors, filters (and/or/not nested up to depth 3), sorts and limits, `list` returns
 *    exactly the oracle's rows in order and `count` its count.
 * 2. findById/getById agree with visibility for own, others', missing, re-cased and malformed ids.
 * 3. Writes (repo.update/delete and query() patch/delete with where/orWhere naming anyone's ids) by a random user
 *    never touch a row outside the scope, and do exactly what the oracle says to the user's own rows.
 *
 * Droplet brings the column types a host model's suite (host-model.property.test.ts) lacks: an enum, an IP address
 * (the nullable column, where ne/notIn/not differ from naive negation) and a second timestamp. The dataset is random,
 * drawn once per file from WINCLOUD_PROPERTY_SEED (or a random seed, named in failures). WINCLOUD_TEST_DEEP=1 runs
 * ten times as many cases.
 */
import fc from 'fast-check'
import { DROPLET_STATUSES, Droplet } from '../../src/index.js'
import type { OracleRow } from '../helpers/oracle.js'
import {
  INSTANTS,
  nameArb,
  pick,
  scopedOracleSuite,
  sometimes,
  timestampValue,
} from '../helpers/scoped-oracle-suite.js'

const REGIONS = ['nyc1', 'nyc3', 'ams3', 'sfo2', 'fra1'] as const
const SIZES = ['s-1vcpu-1gb', 's-2vcpu-4gb', 'm-4vcpu-8gb'] as const
const IPS = ['10.0.0.1', '10.0.0.2', '192.168.1.10', '2001:db8::1', '2001:db8::2', 'fe80::1'] as const

interface DropletRow extends OracleRow {
  readonly userId: string
  readonly name: string
  readonly region: string
  readonly size: string
  readonly status: string
  readonly ipAddress: string | null
  readonly createdAt: Date
  readonly updatedAt: Date
}

const suite = scopedOracleSuite({
  model: Droplet,
  ownerProperty: 'userId',
  ownerColumn: 'user_id',
  row: (owner): fc.Arbitrary<DropletRow> =>
    fc
      .record({
        id: fc.uuid({ version: 4 }),
        userId: owner,
        name: nameArb,
        region: fc.constantFrom(...REGIONS),
        size: fc.constantFrom(...SIZES),
        status: fc.constantFrom(...DROPLET_STATUSES),
        ipAddress: fc.option(fc.constantFrom(...IPS), { freq: 3, nil: null }),
        created: fc.constantFrom(...INSTANTS),
        bump: fc.constantFrom(0, 0, 1, 1_000),
      })
      .map(({ created, bump, ...d }) => ({
        ...d,
        createdAt: new Date(created),
        updatedAt: new Date(created + bump),
      })),
  projection: (row) => ({
    id: row.id,
    userId: row.userId,
    name: row.name,
    region: row.region,
    size: row.size,
    status: row.status,
    ipAddress: row.ipAddress,
    createdAt: row.createdAt.getTime(),
    updatedAt: row.updatedAt.getTime(),
  }),
  filterValues: ({ rows, extraNames }) => {
    const names = [...new Set([...rows.map((r) => r.name), ...extraNames])]
    const regions = [...REGIONS, 'aaa', 'nyc', 'nyc30', 'zzz']
    const sizes = [...SIZES, 's', 's-1vcpu-1gbx']
    const ips = [...IPS, '10.0.0.3']
    const instants = [...new Set(rows.flatMap((r) => [r.createdAt.getTime(), r.updatedAt.getTime()]))]
    return {
      values: {
        name: pick(names),
        region: pick(regions),
        size: pick(sizes),
        status: pick(DROPLET_STATUSES),
        ipAddress: pick(ips),
        createdAt: timestampValue(instants),
        updatedAt: timestampValue(instants),
      },
      likeTexts: { name: names, region: regions, size: sizes },
      collated: [...names, ...regions, ...sizes, ...DROPLET_STATUSES],
      knownIps: new Set(ips),
    }
  },
  // ipAddress is the nullable column, where ne/notIn/not semantics differ from naive negation: pick it more often.
  fieldWeights: { ipAddress: 4, name: 3 },
  patch: {
    status: sometimes(pick(DROPLET_STATUSES), 1),
    region: sometimes(pick(REGIONS), 1),
    name: sometimes(nameArb, 1),
    ipAddress: sometimes(fc.option(pick(IPS), { nil: null }), 2),
  },
  invalidPatch: { property: 'status', value: 'melting' },
  where: [
    { column: 'status', property: 'status', values: pick(DROPLET_STATUSES) },
    { column: 'region', property: 'region', values: pick(REGIONS) },
  ],
})

suite.register('scoped repositories')
