package dev.tether.core.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.go.GoBuildFlags;
import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.protocol.PrepareLaunchResult;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The Java merge of Go tool arguments gives exactly what the daemon's doctor gives, for every
 * form of the doctor's table: the same flags (from {@code tether/prepareLaunch}'s patched launch)
 * and the same words (from {@code tether/doctor}'s findings).
 */
class GoFlagsAgainstDaemonTest {
    /** buildFlags values (JSON), each with an optional GOFLAGS. */
    static final String[][] TABLE = {
        {"\"\""}, {"null"}, {"[]"},
        {"\"-tags 'a b'  -race\""}, {"\"-v \""}, {"[\"-tags\", \"x\", \"-race\"]"},
        {"\"-ldflags=-s\""}, {"\"-ldflags='-s -w'\""}, {"\"-ldflags=\\\"-s -w\\\"\""}, {"\"--ldflags='-X a=b'\""},
        {"\"'-ldflags=-s -w'\""}, {"\"-ldflags=\""}, {"\"-ldflags=''\""},
        {"\"-ldflags -s\""}, {"\"-ldflags '-s -w'\""}, {"\"-ldflags \\\"-X main.v=1 -s\\\"\""},
        {"\"--ldflags \\\"-X a=b\\\" -v\""}, {"\"-ldflags ''\""},
        {"\"-tags x -ldflags=-s -gcflags=all=-N\""}, {"\"-tags -ldflags=-s\""},
        {"\"-ldflags='-X a=1' -race -ldflags '-s -w'\""}, {"[\"-ldflags=-X a=1\", \"-ldflags\", \"-s\"]"},
        {"\"-ldflags='-X a=1'x\""}, {"\"-ldflags=\\\"-X 'main.v=a\\\\\\\"b'\\\"\""},
        {"[\"-ldflags\", \"-s -w\"]"}, {"[\"-tags\", \"x\", \"-ldflags=-s -w\", \"-v\"]"}, {"[\"--ldflags=-X a=b\"]"},
        {"[\"-ldflags=\"]"}, {"\"-ldflags=all=-s\""}, {"\"-ldflags=all=-linkmode=internal\""},
        {"\"-ldflags='-linkmode external'\""}, {"\"-ldflags=-linkmode=external\""}, {"\"-ldflags '-s --linkmode=external'\""},
        {"[\"-ldflags\", \"-linkmode external -s\"]"}, {"\"-ldflags='-linkmode internal -linkmode external'\""},
        {"\"-ldflags='-s -linkmode internal'\""}, {"[\"-ldflags=-linkmode=internal\"]"},
        {"\"-ldflags=\\\"-linkmode external -extldflags '-static'\\\"\""},
        {"\"-ldflags=-linkmode=internal -ldflags=-s\""}, {"\"-ldflags='-linkmode auto'\""},
        {"\"-v\"", "-mod=mod -ldflags=-X=main.v=1"}, {"\"-ldflags=-s\"", "-ldflags=-w"}, {"[\"-race\"]", "-ldflags=-w"},
        {"42"}, {"{\"a\": 1}"}, {"true"}, {"[\"-v\", 3]"}, {"\"-ldflags='-s\""}, {"\"-ldflags\""},
        {"[\"-tags\", \"x\", \"--ldflags\"]"}, {"\"-ldflags=\\\"-X 'a\\\"\""}, {"\"-ldflags=main\""},
        {"\"-gcflags -N -ldflags=-s\""}, {"\"-ldflags='a=b'c\""}, {"\"é -ldflags='ü x'\""},
    };

    static JsonObject launch(java.nio.file.Path program, String[] row) {
        JsonObject l = new JsonObject();
        l.addProperty("type", "go");
        l.addProperty("request", "launch");
        l.addProperty("name", "flags");
        l.addProperty("mode", "debug");
        l.addProperty("program", program.toString());
        JsonElement flags = JsonParser.parseString(row[0]);
        if (!flags.isJsonNull()) {
            l.add("buildFlags", flags);
        }
        JsonObject env = new JsonObject();
        if (row.length > 1) {
            env.addProperty("GOFLAGS", row[1]);
        }
        l.add("env", env);
        return l;
    }

    @Test
    void theJavaMergeIsTheDoctorsForEveryForm() throws Exception {
        Process target = new ProcessBuilder("sleep", "300").start();
        try (PrivateDaemon daemon = new PrivateDaemon("tether-jb-goflags-");
                TetherClient client = new TetherClient(daemon.options())) {
            java.nio.file.Path program = daemon.dir.resolve("goprobe");
            Fixtures.workspace(daemon.dir.resolve("ws"));
            java.nio.file.Files.move(daemon.dir.resolve("ws/goprobe"), program);
            List<String> mismatches = new ArrayList<>();
            int merged = 0;
            for (String[] row : TABLE) {
                JsonObject launch = launch(program, row);
                JsonElement flags = JsonParser.parseString(row[0]);
                String what = row[0] + (row.length > 1 ? " with GOFLAGS=" + row[1] : "");
                List<Diagnostic> found = client.doctor(launch, daemon.dir, null).diagnostics();
                GoBuildFlags.Outcome mine;
                try {
                    mine = GoBuildFlags.mergeWithGoflags(flags, row.length > 1 ? row[1] : null);
                } catch (GoBuildFlags.InvalidFlagsException e) {
                    expect(mismatches, what, found, "go-build-flags-invalid",
                            "cannot add `-linkmode external` to buildFlags: " + e.getMessage(), null);
                    continue;
                }
                if (mine instanceof GoBuildFlags.Conflict c) {
                    expect(mismatches, what, found, "go-linkmode-conflict", "buildFlags have `" + c.found() + "`, which "
                            + c.why() + ": the layer cannot load into a static binary, and tether left the flags unchanged", null);
                } else if (mine instanceof GoBuildFlags.AlreadyExternal a) {
                    expect(mismatches, what, found, "go-linkmode", "buildFlags already link externally (`-ldflags` has `"
                            + a.found() + "`): the binary will load the layer", null);
                } else if (mine instanceof GoBuildFlags.Merged m) {
                    merged++;
                    expect(mismatches, what, found, "go-linkmode",
                            "linking the Go binary externally (dynamically), so that it loads the layer", m.change());
                    // The patched launch carries exactly the merged flags.
                    PrepareLaunchResult r = client.prepareLaunch(
                            new TetherClient.LaunchRequest(launch, daemon.dir, null, "pid:" + target.pid()));
                    assertNotNull(r.sessionId(), () -> what + ": " + r.diagnostics());
                    JsonElement theirs = r.launch().getAsJsonObject().get("buildFlags");
                    if (!m.flags().equals(theirs)) {
                        mismatches.add(what + ": the daemon patched " + theirs + ", Java merged " + m.flags());
                    }
                    client.launchEnded(r.sessionId());
                }
            }
            assertTrue(mismatches.isEmpty(), String.join("\n", mismatches));
            assertTrue(merged >= 30, "merged cases: " + merged);
        } finally {
            target.destroy();
        }
    }

    private static void expect(List<String> mismatches, String what, List<Diagnostic> found, String id, String message,
            String appliedFix) {
        Diagnostic d = found.stream().filter(x -> x.id().equals(id)).findFirst().orElse(null);
        if (d == null) {
            mismatches.add(what + ": no " + id + " in " + found);
            return;
        }
        if (!d.message().equals(message)) {
            mismatches.add(what + ": message\n  daemon: " + d.message() + "\n  java:   " + message);
        }
        if (appliedFix != null && (d.fix() == null || !d.fix().applied() || !d.fix().description().equals(appliedFix))) {
            mismatches.add(what + ": fix\n  daemon: " + d.fix() + "\n  java:   " + appliedFix);
        }
        assertEquals(id, d.id());
    }
}
