// An OPC UA server we did not write (node-opcua), for tests/interop/test_opcua_server.py.
//
//   INTEROP_OPCUA_PASSWORD=... node opcua_server.mjs <pki-folder> <username>
//
// Listens on 127.0.0.1 on a port the OS picks and prints one JSON line on stdout when it accepts
// connections: {"endpoint": "opc.tcp://127.0.0.1:<port>", "port": <port>, "namespace": <uri>}.
// On SIGTERM it prints {"writes": N} (Write, Call and node-management requests it received, the
// read-only agent must send none) and exits 0.
//
// Endpoints: None/None and Basic256Sha256/SignAndEncrypt. Anonymous login is offered on the None
// endpoint only; the secure endpoint wants the user name and password. Any client certificate is
// accepted until SIGUSR2 (see below), and the server's own PKI lives in <pki-folder>, never in
// ~/.config.
//
// The address space: a decoy namespace is registered before ours, so our namespace index is not
// the usual 2, and the decoy holds a node with the same string id and another value; a client
// that does not resolve "nsu=" by URI reads the wrong one. Every value is fixed, except Clock,
// which changes every 100 ms and is always the Unix time of its own SourceTimestamp in seconds.
import { join } from "node:path";

import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { standardUnits } from "node-opcua-data-access";
import { nodesets } from "node-opcua-nodesets";
import { MessageSecurityMode, SecurityPolicy } from "node-opcua-secure-channel";
import { OPCUAServer } from "node-opcua-server";
import { UserTokenType } from "node-opcua-service-endpoints";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, Variant, VariantArrayType } from "node-opcua-variant";

// node-opcua logs through console.log; keep stdout for the protocol lines above.
const emit = console.log.bind(console);
console.log = console.error;

const NAMESPACE = "urn:edge-agent:interop:node-opcua";
const DECOY_NAMESPACE = "urn:edge-agent:interop:decoy";
const CLOCK_PERIOD_MS = 100;
const WRITE_REQUESTS = new Set([
  "WriteRequest",
  "CallRequest",
  "AddNodesRequest",
  "AddReferencesRequest",
  "DeleteNodesRequest",
  "DeleteReferencesRequest",
  "HistoryUpdateRequest",
]);

const [pki, username] = process.argv.slice(2);
const password = process.env.INTEROP_OPCUA_PASSWORD;
if (!pki || !username || !password) {
  console.error("usage: INTEROP_OPCUA_PASSWORD=... node opcua_server.mjs <pki-folder> <username>");
  process.exit(2);
}

const serverCertificateManager = new OPCUACertificateManager({
  rootFolder: join(pki, "server"),
  automaticallyAcceptUnknownCertificate: true,
});
const userCertificateManager = new OPCUACertificateManager({
  rootFolder: join(pki, "user"),
  automaticallyAcceptUnknownCertificate: true,
});

const server = new OPCUAServer({
  host: "127.0.0.1",
  hostname: "127.0.0.1",
  port: 0,
  nodeset_filename: [nodesets.standard],
  serverCertificateManager,
  userCertificateManager,
  securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
  securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
  allowAnonymous: true,
  userManager: { isValidUser: (user, secret) => user === username && secret === password },
  serverInfo: { applicationUri: "urn:edge-agent:interop:node-opcua-server", productUri: "edge-agent-interop" },
  buildInfo: { productName: "edge-agent interop server (node-opcua)" },
});

let writes = 0;
server.on("request", (request) => {
  if (WRITE_REQUESTS.has(request.schema.name)) writes += 1;
});

await server.initialize();

const addressSpace = server.engine.addressSpace;
const decoy = addressSpace.registerNamespace(DECOY_NAMESPACE);
const ns = addressSpace.registerNamespace(NAMESPACE);
const objects = addressSpace.rootFolder.objects;

decoy.addVariable({
  organizedBy: decoy.addFolder(objects, { browseName: "Decoy" }),
  browseName: "Temperature",
  nodeId: "s=Temperature",
  dataType: "Double",
  value: { dataType: DataType.Double, value: -999 },
});

const folder = ns.addFolder(objects, { browseName: "Interop" });
const fixed = (browseName, nodeId, dataType, value, arrayType = VariantArrayType.Scalar) => {
  const variable = ns.addVariable({
    componentOf: folder,
    browseName,
    nodeId,
    dataType,
    valueRank: arrayType === VariantArrayType.Array ? 1 : -1,
    minimumSamplingInterval: CLOCK_PERIOD_MS,
  });
  variable.setValueFromSource(new Variant({ dataType: DataType[dataType], arrayType, value }));
  return variable;
};

const temperature = ns.addAnalogDataItem({
  componentOf: folder,
  browseName: "Temperature",
  nodeId: "s=Temperature",
  dataType: "Double",
  engineeringUnitsRange: { low: -40, high: 150 },
  engineeringUnits: standardUnits.degree_celsius, // DisplayName "°C", as UNECE code CEL
  minimumSamplingInterval: CLOCK_PERIOD_MS,
});
temperature.setValueFromSource(new Variant({ dataType: DataType.Double, value: 21.5 }));
fixed("Ratio", "s=Ratio", "Float", 0.15625);
fixed("Offset", "s=Offset", "Int32", -123456);
fixed("Count", "s=Count", "UInt16", 65000);
fixed("Running", "s=Running", "Boolean", true);
fixed("Label", "s=Label", "String", "Presse 7 – Halle Süd");
fixed("Spectrum", "s=Spectrum", "Double", new Float64Array([1.5, -2.25, 1e6]), VariantArrayType.Array);
fixed("Numbered", "i=4711", "Int32", 4711);

const clock = ns.addVariable({
  componentOf: folder,
  browseName: "Clock",
  nodeId: "s=Clock",
  dataType: "Double",
  minimumSamplingInterval: CLOCK_PERIOD_MS,
});
const tick = () => {
  const now = new Date();
  clock.setValueFromSource(new Variant({ dataType: DataType.Double, value: now.getTime() / 1000 }), StatusCodes.Good, now);
};
tick();
const ticker = setInterval(tick, CLOCK_PERIOD_MS);

await server.start();

// Anonymous only where there is no security: node-opcua offers it on every endpoint of a port, and
// ActivateSession accepts only token policies its endpoint lists, so drop it from the secure ones.
for (const endpoint of server.endpoints) {
  for (const description of endpoint.endpointDescriptions()) {
    if (description.securityMode !== MessageSecurityMode.None) {
      description.userIdentityTokens = description.userIdentityTokens.filter(
        (token) => token.tokenType !== UserTokenType.Anonymous,
      );
    }
  }
}
const port = server.endpoints[0].port;
emit(JSON.stringify({ endpoint: `opc.tcp://127.0.0.1:${port}`, port, namespace: NAMESPACE }));

// SIGUSR2 toggles whether unknown client certificates are accepted; when not, node-opcua refuses
// the secure channel and keeps the certificate in <pki-folder>/server/rejected/ until it is moved
// to trusted/, as most servers do.
process.on("SIGUSR2", () => {
  serverCertificateManager.automaticallyAcceptUnknownCertificate =
    !serverCertificateManager.automaticallyAcceptUnknownCertificate;
  emit(JSON.stringify({ acceptUnknownClients: serverCertificateManager.automaticallyAcceptUnknownCertificate }));
});

let stopping = false;
process.on("SIGTERM", async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  emit(JSON.stringify({ writes }));
  await server.shutdown(0);
  process.exit(0);
});
