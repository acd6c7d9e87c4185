import { randomBytes } from 'node:crypto'

/** Bytes drawn from the CSPRNG per refill. */
const POOL_BYTES = 8192

let pool = Buffer.alloc(0)
let offset = 0

/**
 * `n` fresh random bytes (nonces, IVs), served from a pool the CSPRNG refills 8 KiB at a time, as node's
 * `randomUUID` caches its entropy: one `randomBytes` call costs about as much as the AES-GCM of a short value. Every
 * byte is handed out once; a refill allocates a new pool, so a returned buffer is never overwritten.
 *
 * @internal
 */
export function freshRandom(n: number): Buffer {
  if (n > POOL_BYTES) return randomBytes(n)
  if (offset + n > pool.length) {
    pool = randomBytes(POOL_BYTES)
    offset = 0
  }
  const bytes = pool.subarray(offset, offset + n)
  offset += n
  return bytes
}
