/**
 * The bounds of what query timing keeps, per database:
 *
 * - `groups`: at most 500 groups, holding at most about 2 MiB of normalized SQL together; past either, new shapes are
 *   counted in one `(other)` group;
 * - `sqlLength`: a group's SQL is cut to its first 2,048 characters (with `…`); its id stays the hash of the whole;
 * - `sqlCacheEntries`, `sqlCacheBytes`, `sqlCacheEntryBytes`: the cache from a statement's text to its group (it saves
 *   normalizing a statement seen before) holds at most 2,000 statements and about 4 MiB, least recently used out
 *   first; a statement longer than about 32,000 characters (64 KiB at two bytes a character) is normalized every
 *   time instead of cached;
 * - `inFlight`: at most 10,000 queries waiting for their answer are timed; past that the oldest are forgotten (a
 *   query that never answers must not grow memory).
 *
 * @internal
 */
export const QUERY_STATS_LIMITS = Object.freeze({
  groups: 500,
  groupBytes: 2 * 1024 * 1024,
  sqlLength: 2_048,
  operationLength: 32,
  sqlCacheEntries: 2_000,
  sqlCacheBytes: 4 * 1024 * 1024,
  sqlCacheEntryBytes: 64 * 1024,
  inFlight: 10_000,
})
