// Compiles the settlement contract and the test token with the pinned solc (npm `solc`, a WebAssembly build, so
// every machine compiles with the same compiler) and writes one JSON artefact per contract: ABI, creation and
// runtime bytecode, compiler version and settings. Deterministic: the same sources give the same bytes.
//
//   node build.mjs [OUT_DIR]     (default: out/ next to this file)
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const solc = createRequire(import.meta.url)('solc');
const outDir = process.argv[2] ?? join(here, 'out');

// Pinned compiler settings. evmVersion cancun keeps the bytecode free of newer opcodes, so the same artefact
// deploys on chains that have not adopted Prague or Osaka (P256VERIFY is a precompile, reached by address).
// No metadata hash: the bytes depend only on the code, not on comments or file paths.
export const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  viaIR: true,
  metadata: { bytecodeHash: 'none', appendCBOR: false },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

// Source unit name -> contract to emit.
const SOURCES = {
  'DaitSettlement.sol': 'DaitSettlement',
  'test/TestToken.sol': 'TestToken',
};

const input = {
  language: 'Solidity',
  sources: Object.fromEntries(
    Object.keys(SOURCES).map((name) => [name, { content: readFileSync(join(here, name), 'utf8') }]),
  ),
  settings: SETTINGS,
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = (output.errors ?? []).filter((e) => e.severity !== 'info');
for (const e of problems) process.stderr.write(`${e.formattedMessage}\n`);
if (problems.some((e) => e.severity === 'error')) process.exit(1);
if (problems.length > 0) {
  process.stderr.write('compiler warnings are errors here\n');
  process.exit(1);
}

mkdirSync(outDir, { recursive: true });
for (const [source, name] of Object.entries(SOURCES)) {
  const c = output.contracts[source][name];
  const artefact = {
    contractName: name,
    sourceName: source,
    compiler: solc.version(),
    settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion, viaIR: SETTINGS.viaIR, metadata: SETTINGS.metadata },
    abi: c.abi,
    bytecode: `0x${c.evm.bytecode.object}`,
    deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
  };
  writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify(artefact, null, 2)}\n`);
  const runtime = c.evm.deployedBytecode.object.length / 2;
  process.stderr.write(`${name}: runtime ${runtime} bytes (limit 24576)\n`);
  if (runtime > 24576) process.exit(1);
}
