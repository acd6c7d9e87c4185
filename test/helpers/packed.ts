import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join, relative, resolve, sep } from 'node:path'
import { promisify } from 'node:util'

/*
 * The examples as a user runs them: the repository packed by `npm pack` (its prepack script builds dist/), the example
 * copied next to the tarball the way it sits in a clone (`examples/<name>/`, the tarball two folders up, where its
 * package.json points), and installed with `npm install`. The example then imports what the tarball ships, so a file
 * left out of the package or a broken export fails its tests.
 *
 * `npm pack` runs in a snapshot of the working tree (without node_modules, .git, dist and other output; node_modules
 * is linked to the repository's), not in the repository itself: its build deletes and rewrites dist/, and another
 * test file packing at the same time would pack half a build. The tarball is kept in .tmp/packed/, under a hash of
 * the snapshot and of the installed dependencies, so the test files of one run pack once between them; any change to
 * a file of the repository makes a new one.
 */

const run = promisify(execFile)
const root = resolve(__dirname, '../..')
const cache = join(root, '.tmp', 'packed')
const maxBuffer = 16 * 1024 * 1024
/** Cached tarballs not used for this long are deleted when a new one is stored. */
const keepMs = 60 * 60 * 1000

/** Paths of the repository (relative to it) left out of the snapshot: built, installed or produced, not source. */
function leftOut(path: string): boolean {
  const parts = path.split(sep)
  if (parts.includes('node_modules') || parts.includes('.git')) return true
  if (parts.length === 1) return ['dist', '.tmp', 'coverage'].includes(path) || path.endsWith('.tgz')
  return path === join('docs', 'api')
}

/** Every file under `dir`, relative to it, in a fixed order. */
async function files(dir: string, under = ''): Promise<string[]> {
  const found: string[] = []
  const entries = await readdir(join(dir, under), { withFileTypes: true })
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const path = join(under, entry.name)
    if (entry.isDirectory()) found.push(...(await files(dir, path)))
    else found.push(path)
  }
  return found
}

/** The hash of every file of the snapshot, names and contents, and of the dependencies installed in the repository. */
async function contentKey(snapshot: string): Promise<string> {
  const hash = createHash('sha256').update(`${process.version}\0`)
  for (const path of await files(snapshot)) {
    hash
      .update(`${path}\0`)
      .update(await readFile(join(snapshot, path)))
      .update('\0')
  }
  hash.update(await readFile(join(root, 'node_modules', '.package-lock.json')).catch(() => 'no installed tree'))
  return hash.digest('hex').slice(0, 32)
}

/** The path of the tarball in `dir`, if there is one. */
async function tarballIn(dir: string): Promise<string | undefined> {
  const names = await readdir(dir).catch(() => [])
  const name = names.find((entry) => entry.endsWith('.tgz'))
  return name === undefined ? undefined : join(dir, name)
}

/** Deletes cached tarballs (and stores that never finished) not used for `keepMs`, except `keep`. */
async function prune(keep: string): Promise<void> {
  for (const entry of await readdir(cache).catch(() => [])) {
    if (entry === keep) continue
    const path = join(cache, entry)
    const { mtimeMs } = await stat(path).catch(() => ({ mtimeMs: Date.now() }))
    if (Date.now() - mtimeMs > keepMs) await rm(path, { recursive: true, force: true })
  }
}

/** Packs the repository with `npm pack`, or finds the tarball of the same content packed before. */
async function pack(): Promise<string> {
  const snapshot = await mkdtemp(join(tmpdir(), 'wincloud-pack-'))
  try {
    await cp(root, snapshot, { recursive: true, filter: (source) => !leftOut(relative(root, source)) })
    const key = await contentKey(snapshot)
    const stored = join(cache, key)
    const hit = await tarballIn(stored)
    if (hit !== undefined) {
      const now = new Date()
      await utimes(stored, now, now)
      return hit
    }
    await symlink(join(root, 'node_modules'), join(snapshot, 'node_modules'), 'dir')
    await run('npm', ['pack', '--silent', '--pack-destination', snapshot], { cwd: snapshot, maxBuffer })
    const made = await tarballIn(snapshot)
    if (made === undefined) throw new Error('npm pack made no tarball')
    // Stored whole or not at all: written aside, then renamed. Another process storing the same key first wins.
    const partial = `${stored}.${process.pid}`
    await mkdir(partial, { recursive: true })
    await copyFile(made, join(partial, basename(made)))
    await rename(partial, stored).catch(() => rm(partial, { recursive: true, force: true }))
    await prune(key)
    const tarball = await tarballIn(stored)
    if (tarball === undefined) throw new Error(`the packed tarball is missing from ${stored}`)
    return tarball
  } finally {
    await rm(snapshot, { recursive: true, force: true })
  }
}

let packing: Promise<string> | undefined

/** The tarball `npm pack` makes of the repository: packed at most once per process. */
export function packedTarball(): Promise<string> {
  packing ??= pack().catch((error: unknown) => {
    packing = undefined
    throw error
  })
  return packing
}

/** An example installed from the packed tarball, in a temporary folder of its own. */
export interface PackedExample {
  /** The example's folder: `npm start` and `npm run typecheck` run here. */
  readonly dir: string
  /** Deletes the temporary folder. */
  cleanup(): Promise<void>
}

/**
 * Packs the repository (see {@link packedTarball}), copies `examples/<name>` into a new temporary folder with the
 * tarball two levels up, as its package.json expects (`file:../../<tarball>`), and runs `npm install` there. Its
 * node_modules then holds the package as the tarball ships it, and the example's own dependencies (tsx among them).
 */
export async function packedExample(name = 'express-app'): Promise<PackedExample> {
  const tarball = await packedTarball()
  const home = await mkdtemp(join(tmpdir(), 'wincloud-example-'))
  const cleanup = (): Promise<void> => rm(home, { recursive: true, force: true })
  try {
    await copyFile(tarball, join(home, basename(tarball)))
    const dir = join(home, 'examples', name)
    // A user's own install in the repository's copy of the example is left behind: node_modules and any lockfile.
    await cp(join(root, 'examples', name), dir, {
      recursive: true,
      filter: (source) => !['node_modules', 'package-lock.json'].includes(basename(source)),
    })
    const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>
    }
    const spec = manifest.dependencies?.['@wincloud/data']
    const expected = `file:../../${basename(tarball)}`
    if (spec !== expected) {
      throw new Error(
        `examples/${name}/package.json depends on @wincloud/data ${JSON.stringify(spec)}, but npm pack makes ` +
          `${basename(tarball)}: the dependency should be "${expected}"`,
      )
    }
    // NODE_ENV=production would make npm leave out the devDependencies, tsx and typescript among them.
    const env = { ...process.env }
    delete env.NODE_ENV
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, env, maxBuffer })
    return { dir, cleanup }
  } catch (error) {
    await cleanup()
    throw error
  }
}
