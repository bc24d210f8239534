// follow.ts runs the reference TypeScript client, @oh-my-pi/pi-ai's
// RemoteAuthCredentialStore (18.2.3), against a broker and reports when its
// mirror reaches a generation. bench/deltacost starts it with bun; it is not
// part of the exporter.
//
//   bun follow.ts <pi-ai package dir> <broker URL> <token file>
//
// stdout, one line each:
//   ready <generation> <credentials>   after the stream's first snapshot is applied
//   reached <generation>               answer to "wait <generation>" on stdin, as
//                                      soon as the store holds that generation or a later one
//
// The store is constructed as the agent does it: an AuthBrokerClient with the
// base URL and bearer token, a RemoteAuthCredentialStore with stream
// snapshots on. The only addition is an observer around the client's
// openSnapshotStream: the store consumes each event before asking for the
// next, so code after `yield` runs right after the store applied the event.
// That costs O(1) per event and needs no polling.
import { readFileSync } from "node:fs";
import { join } from "node:path";

const [piAi, url, tokenFile] = process.argv.slice(2);
if (!piAi || !url || !tokenFile) {
	console.error("usage: bun follow.ts <pi-ai dir> <broker URL> <token file>");
	process.exit(2);
}
const { AuthBrokerClient } = await import(join(piAi, "src/auth-broker/client.ts"));
const { RemoteAuthCredentialStore } = await import(join(piAi, "src/auth-broker/remote-store.ts"));

const token = readFileSync(tokenFile, "utf8").trim();
const client = new AuthBrokerClient({ url, token });

let store: InstanceType<typeof RemoteAuthCredentialStore> | undefined;
let ready = false;
let target = -1;

function check(afterEvent: boolean): void {
	if (!store || (!ready && !afterEvent)) return;
	const snap = store.snapshot;
	if (!ready) {
		ready = true;
		process.stdout.write(`ready ${snap.generation} ${snap.credentials.length}\n`);
	}
	if (target >= 0 && snap.generation >= target) {
		process.stdout.write(`reached ${target}\n`);
		target = -1;
	}
}

const open = client.openSnapshotStream.bind(client);
client.openSnapshotStream = async function* (opts: { signal?: AbortSignal }) {
	for await (const event of open(opts)) {
		yield event;
		// The store has applied `event` and asks for the next one.
		check(true);
	}
};

store = new RemoteAuthCredentialStore({ client, streamSnapshots: true, backgroundIdleMs: 24 * 3600 * 1000 });

let pending = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
	pending += chunk;
	let nl: number;
	while ((nl = pending.indexOf("\n")) >= 0) {
		const line = pending.slice(0, nl).trim();
		pending = pending.slice(nl + 1);
		const m = /^wait (\d+)$/.exec(line);
		if (m) {
			target = Number(m[1]);
			check(false);
		}
	}
});
process.stdin.on("end", () => {
	store?.close();
	process.exit(0);
});
