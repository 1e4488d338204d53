package dev.tether.core.go;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The port of doctor/src/shellwords.rs's tests. */
class ShellWordsTest {
    private static List<String> values(String text) throws Exception {
        return ShellWords.values(text);
    }

    @Test
    void plainWordsAndBlanks() throws Exception {
        assertEquals(List.of("-tags", "x", "-v"), values("  -tags x\t-v\n"));
        assertTrue(ShellWords.split("").isEmpty());
        assertTrue(ShellWords.split("   ").isEmpty());
    }

    @Test
    void quotesAreRemovedAndSpansKeepTheOriginal() throws Exception {
        String text = "-ldflags='-s -w' --x=\"a b\"";
        List<ShellWords.Word> words = ShellWords.split(text);
        assertEquals("-ldflags=-s -w", words.get(0).value());
        assertEquals("-ldflags='-s -w'", words.get(0).raw(text));
        assertEquals('\'', words.get(0).closingQuote());
        assertEquals("--x=a b", words.get(1).value());
        assertEquals("--x=\"a b\"", words.get(1).raw(text));
        assertEquals('"', words.get(1).closingQuote());
    }

    @Test
    void closingQuoteOnlyWhenTheWordEndsWithIt() throws Exception {
        List<ShellWords.Word> words = ShellWords.split("'a'b c'd'");
        assertEquals("ab", words.get(0).value());
        assertEquals(null, words.get(0).closingQuote());
        assertEquals('\'', words.get(1).closingQuote());
    }

    @Test
    void backslashes() throws Exception {
        assertEquals(List.of("a b"), values("a\\ b"));
        assertEquals(List.of("a\"b\\c\\d"), values("\"a\\\"b\\\\c\\d\""));
        assertEquals(List.of("a\\b"), values("'a\\b'"));
        assertEquals(List.of("end\\"), values("end\\"));
    }

    @Test
    void adjacentQuotedPartsMakeOneWord() throws Exception {
        assertEquals(List.of("-X a=b c"), values("-X' 'a\"=b c\""));
    }

    @Test
    void unterminatedQuotesFail() {
        assertTrue(assertThrows(ShellWords.SyntaxException.class, () -> ShellWords.split("-ldflags='-s"))
                .getMessage().contains("unterminated '"));
        assertTrue(assertThrows(ShellWords.SyntaxException.class, () -> ShellWords.split("\"abc"))
                .getMessage().contains("unterminated \""));
    }

    @Test
    void nonAsciiSpansAndByteOffsets() throws Exception {
        String text = "é 'ü x'";
        List<ShellWords.Word> words = ShellWords.split(text);
        assertEquals("'ü x'", words.get(1).raw(text));
        assertEquals("ü x", words.get(1).value());
        // Messages count bytes, as the Rust code does: "é " is 3 bytes.
        assertEquals("unterminated ' quote at byte 3",
                assertThrows(ShellWords.SyntaxException.class, () -> ShellWords.split("é 'x")).getMessage());
    }

    @Test
    void quoteRoundTrips() throws Exception {
        for (String s : new String[] {"-linkmode external", "plain", "it's", "", "a\"b"}) {
            String q = ShellWords.quote(s);
            assertEquals(List.of(s), values(q), q);
        }
        assertEquals("-s", ShellWords.quote("-s"));
        assertEquals("'-s -w'", ShellWords.quote("-s -w"));
    }
}
