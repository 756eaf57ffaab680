// A third-party OPC UA client (node-opcua) against the simulator, for tests/interop/test_node_opcua.py.
//
//   node browse_read.mjs <endpoint> <machine> [pki-folder]
//
// Connects with security None (anonymous), reads the namespace array, browses
// Objects/Machines, then reads Value (with SourceTimestamp) and DataType of every variable of
// <machine>. Prints one JSON document on stdout; exits 1 with a message on stderr on failure.
// Timestamps are printed as Unix nanoseconds (a string: exact beyond JavaScript's millisecond
// Date, using node-opcua's sourcePicoseconds) and as ISO text. node-opcua makes a client
// certificate even for security None; [pki-folder] (default: a fresh temporary folder) keeps
// it out of ~/.config.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import {
  AttributeIds,
  BrowseDirection,
  MessageSecurityMode,
  NodeClassMask,
  OPCUAClient,
  ReferenceTypeIds,
  SecurityPolicy,
  resolveNodeId,
} from "node-opcua-client";

// node-opcua logs through console.log; keep stdout for the JSON document alone.
console.log = console.error;

const [endpoint, machine, pkiArg] = process.argv.slice(2);
if (!endpoint || !machine) {
  console.error("usage: node browse_read.mjs <endpoint> <machine> [pki-folder]");
  process.exit(2);
}

const deadline = setTimeout(() => {
  console.error(`browse_read.mjs: no answer from ${endpoint} within 20 s`);
  process.exit(3);
}, 20000);

function unixNs(date, picoseconds) {
  if (!date) return null;
  // node-opcua keeps the sub-millisecond part of the 100 ns DateTime in *Picoseconds.
  return (BigInt(date.getTime()) * 1000000n + BigInt(Math.floor((picoseconds || 0) / 1000))).toString();
}

async function browseChildren(session, nodeId, nodeClassMask) {
  const result = await session.browse({
    nodeId,
    browseDirection: BrowseDirection.Forward,
    referenceTypeId: resolveNodeId(ReferenceTypeIds.HierarchicalReferences),
    includeSubtypes: true,
    nodeClassMask,
    resultMask: 0x3f,
  });
  if (result.statusCode.isNotGood()) {
    throw new Error(`browse ${nodeId.toString()}: ${result.statusCode.toString()}`);
  }
  return result.references.map((ref) => ({
    nodeId: ref.nodeId.toString(),
    browseName: ref.browseName.name,
    browseNamespace: ref.browseName.namespaceIndex,
  }));
}

const pkiFolder = pkiArg || mkdtempSync(join(tmpdir(), "edge-interop-pki-"));
const clientCertificateManager = new OPCUACertificateManager({
  rootFolder: pkiFolder,
  automaticallyAcceptUnknownCertificate: true,
});

const client = OPCUAClient.create({
  clientCertificateManager,
  applicationName: "edge-agent-interop",
  securityMode: MessageSecurityMode.None,
  securityPolicy: SecurityPolicy.None,
  endpointMustExist: false,
  connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
  requestedSessionTimeout: 20000,
});

try {
  await client.connect(endpoint);
  const session = await client.createSession();
  const namespaceArray = (await session.read({ nodeId: "i=2255", attributeId: AttributeIds.Value })).value.value;

  const objects = await browseChildren(session, resolveNodeId("ObjectsFolder"), NodeClassMask.Object);
  const machinesFolder = objects.find((ref) => ref.browseName === "Machines");
  if (!machinesFolder) {
    throw new Error(`no Objects/Machines; Objects has ${objects.map((r) => r.browseName).join(", ")}`);
  }
  const machines = await browseChildren(session, machinesFolder.nodeId, NodeClassMask.Object);
  for (const m of machines) {
    m.variables = await browseChildren(session, m.nodeId, NodeClassMask.Variable);
  }

  const target = machines.find((m) => m.browseName === machine);
  if (!target) {
    throw new Error(`no machine ${machine}; Machines has ${machines.map((m) => m.browseName).join(", ")}`);
  }
  const nodesToRead = target.variables.flatMap((v) => [
    { nodeId: v.nodeId, attributeId: AttributeIds.Value },
    { nodeId: v.nodeId, attributeId: AttributeIds.DataType },
  ]);
  const results = await session.read(nodesToRead, 0); // node-opcua asks for TimestampsToReturn.Both
  const reads = target.variables.map((v, i) => {
    const value = results[2 * i];
    const dataType = results[2 * i + 1];
    return {
      nodeId: v.nodeId,
      browseName: v.browseName,
      statusCode: value.statusCode.name,
      value: value.value.value,
      variantType: value.value.dataType,
      dataType: dataType.value.value ? dataType.value.value.toString() : null,
      sourceTimestampNs: unixNs(value.sourceTimestamp, value.sourcePicoseconds),
      sourceTimestamp: value.sourceTimestamp ? value.sourceTimestamp.toISOString() : null,
      serverTimestampNs: unixNs(value.serverTimestamp, value.serverPicoseconds),
    };
  });

  await session.close();
  await client.disconnect();
  clearTimeout(deadline);
  process.stdout.write(`${JSON.stringify({ endpoint, namespaceArray, machines, machine, reads })}\n`);
} catch (err) {
  console.error(`browse_read.mjs: ${err && err.stack ? err.stack : err}`);
  try {
    await client.disconnect();
  } catch {
    // already gone
  }
  process.exit(1);
}
