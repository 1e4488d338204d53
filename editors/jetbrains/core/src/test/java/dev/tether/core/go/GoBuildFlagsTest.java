package dev.tether.core.go;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The port of the doctor's buildFlags table (doctor/src/go.rs): every case gives the same result
 * here as there. {@code GoMergeAgainstDaemonTest} checks the same table against the real daemon.
 */
class GoBuildFlagsTest {
    static JsonElement json(String text) {
        return JsonParser.parseString(text);
    }

    static JsonElement merged(JsonElement flags) {
        try {
            GoBuildFlags.Outcome o = GoBuildFlags.merge(flags);
            if (o instanceof GoBuildFlags.Merged m) {
                return m.flags();
            }
            return fail(flags + ": " + o);
        } catch (GoBuildFlags.InvalidFlagsException e) {
            return fail(flags + ": " + e.getMessage());
        }
    }

    static String s(String flags) {
        return merged(new JsonPrimitive(flags)).getAsString();
    }

    /** The words Go would see, for checking a merge's meaning (not only its text). */
    static List<String> goWords(String flags) throws Exception {
        return ShellWords.values(flags);
    }

    @Test
    void noFlagsAtAll() {
        assertEquals("-ldflags='-linkmode external'", s(""));
        assertEquals(new JsonPrimitive("-ldflags='-linkmode external'"), merged(JsonNull.INSTANCE));
        assertEquals(json("[\"-ldflags=-linkmode external\"]"), merged(json("[]")));
    }

    @Test
    void otherFlagsWithoutLdflagsAreKeptAsWritten() {
        assertEquals("-tags 'a b'  -race -ldflags='-linkmode external'", s("-tags 'a b'  -race"));
        assertEquals("-v -ldflags='-linkmode external'", s("-v "));
        assertEquals(json("[\"-tags\", \"x\", \"-race\", \"-ldflags=-linkmode external\"]"),
                merged(json("[\"-tags\", \"x\", \"-race\"]")));
    }

    @Test
    void inlineLdflagsForms() {
        assertEquals("-ldflags='-s -linkmode external'", s("-ldflags=-s"));
        assertEquals("-ldflags='-s -w -linkmode external'", s("-ldflags='-s -w'"));
        assertEquals("-ldflags=\"-s -w -linkmode external\"", s("-ldflags=\"-s -w\""));
        assertEquals("--ldflags='-X a=b -linkmode external'", s("--ldflags='-X a=b'"));
        assertEquals("'-ldflags=-s -w -linkmode external'", s("'-ldflags=-s -w'"));
        assertEquals("-ldflags='-linkmode external'", s("-ldflags="));
        assertEquals("-ldflags='-linkmode external'", s("-ldflags=''"));
    }

    @Test
    void separateValueForms() {
        assertEquals("-ldflags '-s -linkmode external'", s("-ldflags -s"));
        assertEquals("-ldflags '-s -w -linkmode external'", s("-ldflags '-s -w'"));
        assertEquals("-ldflags \"-X main.v=1 -s -linkmode external\"", s("-ldflags \"-X main.v=1 -s\""));
        assertEquals("--ldflags \"-X a=b -linkmode external\" -v", s("--ldflags \"-X a=b\" -v"));
        assertEquals("-ldflags '-linkmode external'", s("-ldflags ''"));
    }

    @Test
    void surroundedByOtherFlags() {
        assertEquals("-tags x -ldflags='-s -linkmode external' -gcflags=all=-N", s("-tags x -ldflags=-s -gcflags=all=-N"));
        // A value of another flag that looks like -ldflags is not one.
        assertEquals("-tags -ldflags=-s -ldflags='-linkmode external'", s("-tags -ldflags=-s"));
    }

    @Test
    void onlyTheLastLdflagsIsChanged() {
        assertEquals("-ldflags='-X a=1' -race -ldflags '-s -w -linkmode external'",
                s("-ldflags='-X a=1' -race -ldflags '-s -w'"));
        // The first one keeps its exact text; Go ignores it anyway.
        assertEquals(json("[\"-ldflags=-X a=1\", \"-ldflags\", \"-s -linkmode external\"]"),
                merged(json("[\"-ldflags=-X a=1\", \"-ldflags\", \"-s\"]")));
    }

    @Test
    void quotingMixedWithinAWord() throws Exception {
        // Quoted in the middle, bare at the end: a quoted piece is appended to the word.
        String out = s("-ldflags='-X a=1'x");
        assertEquals("-ldflags='-X a=1'x' -linkmode external'", out);
        assertEquals(List.of("-ldflags=-X a=1x -linkmode external"), goWords(out));
        // Escaped quotes inside double quotes survive untouched.
        assertEquals("-ldflags=\"-X 'main.v=a\\\"b' -linkmode external\"", s("-ldflags=\"-X 'main.v=a\\\"b'\""));
    }

    @Test
    void listForms() {
        assertEquals(json("[\"-ldflags\", \"-s -w -linkmode external\"]"), merged(json("[\"-ldflags\", \"-s -w\"]")));
        assertEquals(json("[\"-tags\", \"x\", \"-ldflags=-s -w -linkmode external\", \"-v\"]"),
                merged(json("[\"-tags\", \"x\", \"-ldflags=-s -w\", \"-v\"]")));
        assertEquals(json("[\"--ldflags=-X a=b -linkmode external\"]"), merged(json("[\"--ldflags=-X a=b\"]")));
        assertEquals(json("[\"-ldflags=-linkmode external\"]"), merged(json("[\"-ldflags=\"]")));
    }

    @Test
    void packagePatternsAreKept() throws Exception {
        assertEquals("-ldflags='all=-s -linkmode external'", s("-ldflags=all=-s"));
        assertInstanceOf(GoBuildFlags.Conflict.class, GoBuildFlags.merge(json("\"-ldflags=all=-linkmode=internal\"")));
    }

    @Test
    void alreadyExternalIsLeftAlone() throws Exception {
        for (String flags : new String[] {
            "\"-ldflags='-linkmode external'\"",
            "\"-ldflags=-linkmode=external\"",
            "\"-ldflags '-s --linkmode=external'\"",
            "[\"-ldflags\", \"-linkmode external -s\"]",
            "\"-ldflags='-linkmode internal -linkmode external'\"",
        }) {
            assertInstanceOf(GoBuildFlags.AlreadyExternal.class, GoBuildFlags.merge(json(flags)), flags);
        }
    }

    @Test
    void internalOrStaticIsAConflict() throws Exception {
        assertEquals(new GoBuildFlags.Conflict("-linkmode internal", "makes Go link the binary itself, statically"),
                GoBuildFlags.merge(json("\"-ldflags='-s -linkmode internal'\"")));
        GoBuildFlags.Outcome out = GoBuildFlags.merge(json("[\"-ldflags=-linkmode=internal\"]"));
        assertEquals("-linkmode=internal", assertInstanceOf(GoBuildFlags.Conflict.class, out).found());
        out = GoBuildFlags.merge(json("\"-ldflags=\\\"-linkmode external -extldflags '-static'\\\"\""));
        assertTrue(assertInstanceOf(GoBuildFlags.Conflict.class, out).why().contains("static"));
        // External on an earlier, ignored -ldflags does not count; internal there does not either.
        assertEquals("-ldflags=-linkmode=internal -ldflags='-s -linkmode external'",
                s("-ldflags=-linkmode=internal -ldflags=-s"));
    }

    @Test
    void autoLinkmodeIsOverriddenAfterIt() {
        assertEquals("-ldflags='-linkmode auto -linkmode external'", s("-ldflags='-linkmode auto'"));
    }

    @Test
    void goflagsLdflagsIsCarriedOver() throws Exception {
        GoBuildFlags.Outcome out = GoBuildFlags.mergeWithGoflags(json("\"-v\""), "-mod=mod -ldflags=-X=main.v=1");
        GoBuildFlags.Merged m = assertInstanceOf(GoBuildFlags.Merged.class, out);
        assertEquals(new JsonPrimitive("-v -ldflags='-X=main.v=1 -linkmode external'"), m.flags());
        assertTrue(m.change().contains("GOFLAGS"));
        // With an -ldflags of its own, GOFLAGS does not matter.
        out = GoBuildFlags.mergeWithGoflags(json("\"-ldflags=-s\""), "-ldflags=-w");
        assertEquals(new JsonPrimitive("-ldflags='-s -linkmode external'"),
                assertInstanceOf(GoBuildFlags.Merged.class, out).flags());
    }

    @Test
    void junkIsAnErrorNotACrash() {
        String[][] cases = {
            {"42", "a number"},
            {"{\"a\": 1}", "an object"},
            {"true", "a boolean"},
            {"[\"-v\", 3]", "element 1 is a number"},
            {"\"-ldflags='-s\"", "unterminated"},
            {"\"-ldflags\"", "has no value"},
            {"[\"-tags\", \"x\", \"--ldflags\"]", "has no value"},
            {"\"-ldflags=\\\"-X 'a\\\"\"", "unterminated"},
            {"\"-ldflags=main\"", "pattern"},
        };
        for (String[] c : cases) {
            String e = assertThrows(GoBuildFlags.InvalidFlagsException.class, () -> GoBuildFlags.merge(json(c[0])), c[0])
                    .getMessage();
            assertTrue(e.contains(c[1]), c[0] + ": " + e);
        }
    }

    @Test
    void changeDescriptionsShowBeforeAndAfter() throws Exception {
        GoBuildFlags.Merged m = assertInstanceOf(GoBuildFlags.Merged.class, GoBuildFlags.merge(json("\"-ldflags='-s -w' -v\"")));
        assertEquals("added `-linkmode external` to the last -ldflags: `-ldflags='-s -w'` → `-ldflags='-s -w -linkmode external'`",
                m.change());
        m = assertInstanceOf(GoBuildFlags.Merged.class, GoBuildFlags.merge(json("[\"-ldflags\", \"-s\"]")));
        assertTrue(m.change().contains("-s -linkmode external"), m.change());
        assertEquals("added `-linkmode external` to the last -ldflags: `-ldflags \"-s\"` → `-ldflags \"-s -linkmode external\"`",
                m.change());
    }

    @Test
    void everyMergeKeepsTheUsersWordsAndAddsTheFlagToTheLastValue() throws Exception {
        for (String flags : new String[] {
            "-ldflags=-s",
            "-tags x -ldflags '-X a=b c' -v",
            "--ldflags=\"-s\" -ldflags='-w'",
            "-gcflags -N -ldflags=-s",
            "-ldflags='a=b'c",
        }) {
            List<String> before = goWords(flags);
            List<String> after = goWords(s(flags));
            assertEquals(before.size(), after.size(), flags);
            List<Integer> changed = new ArrayList<>();
            for (int i = 0; i < before.size(); i++) {
                if (!before.get(i).equals(after.get(i))) {
                    changed.add(i);
                }
            }
            assertEquals(1, changed.size(), flags + ": " + after);
            int i = changed.get(0);
            assertEquals(before.get(i) + " -linkmode external", after.get(i), flags);
        }
    }

    @Test
    void theListAndStringEntryPointsAgreeWithTheJsonOne() throws Exception {
        assertEquals(GoBuildFlags.merge(json("[\"-tags\", \"x\"]")), GoBuildFlags.merge(List.of("-tags", "x")));
        assertEquals(GoBuildFlags.merge(json("\"-ldflags=-s\"")), GoBuildFlags.merge("-ldflags=-s"));
        assertEquals("\"a\\\"b\\\\c\\n\"", GoBuildFlags.debugString("a\"b\\c\n"));
    }
}
