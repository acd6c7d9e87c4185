import { randomFillSync } from 'node:crypto'

const pool = Buffer.alloc(16 * 256)
let poolOffset = pool.length
let lastMs = -1
let sequence = 0

function randomBytes16(): Buffer {
  if (poolOffset >= pool.length) {
    randomFillSync(pool)
    poolOffset = 0
  }
  const bytes = Buffer.from(pool.subarray(poolOffset, poolOffset + 16))
  poolOffset += 16
  return bytes
}

/**
 * A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit sequence that keeps ids made in the
 * same millisecond by this process in increasing order, then 62 random bits.
 *
 * @internal
 */
export function uuidv7(now: number = Date.now()): string {
  const bytes = randomBytes16()
  let ms = now
  if (ms <= lastMs) {
    ms = lastMs
    sequence += 1
    if (sequence > 0xfff) {
      // The 12-bit sequence is exhausted within this millisecond: borrow the next one.
      ms = lastMs + 1
      sequence = bytes[6]! & 0x3ff
    }
  } else {
    // Start low in the sequence space so there is room to count up within the millisecond.
    sequence = ((bytes[6]! << 8) | bytes[7]!) & 0x3ff
  }
  lastMs = ms
  bytes.writeUIntBE(ms, 0, 6)
  bytes[6] = 0x70 | (sequence >> 8)
  bytes[7] = sequence & 0xff
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  const hex = bytes.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Whether a value is a UUID in its text form (any version, either case): what an id must be before it reaches SQL.
 *
 * @internal
 */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_TEXT.test(value)
}
