package dev.tether.core.go;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A shell-words tokenizer that remembers where every word came from: the port of the doctor's
 * {@code doctor/src/shellwords.rs}, with the same rules and messages. Spans are Java string
 * indices; messages give byte offsets, as the Rust code does.
 */
public final class ShellWords {
    private ShellWords() {}

    /** One word: its value after quote removal, its span in the text, and how its text ended. */
    public record Word(String value, int start, int end, Character closingQuote) {
        /** The word as the user wrote it. */
        public String raw(String text) {
            return text.substring(start, end);
        }
    }

    /** An unterminated quote. */
    public static final class SyntaxException extends Exception {
        public SyntaxException(String message) {
            super(message);
        }
    }

    private static boolean isBlank(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
    }

    private static int byteOffset(String text, int index) {
        return text.substring(0, index).getBytes(StandardCharsets.UTF_8).length;
    }

    /**
     * Splits {@code text} into words: blanks separate words; {@code '...'} is literal; inside
     * {@code "..."} a backslash escapes {@code " \ $ `} (and a newline), and is literal before
     * anything else; outside quotes a backslash escapes the next character (a trailing one is kept).
     */
    public static List<Word> split(String text) throws SyntaxException {
        List<Word> words = new ArrayList<>();
        int n = text.length();
        int i = 0;
        while (i < n) {
            if (isBlank(text.charAt(i))) {
                i++;
                continue;
            }
            int start = i;
            StringBuilder value = new StringBuilder();
            Character closing = null;
            while (i < n && !isBlank(text.charAt(i))) {
                char c = text.charAt(i);
                int at = i;
                i++;
                closing = null;
                switch (c) {
                    case '\'' -> {
                        boolean closed = false;
                        while (i < n) {
                            char q = text.charAt(i++);
                            if (q == '\'') {
                                closed = true;
                                break;
                            }
                            value.append(q);
                        }
                        if (!closed) {
                            throw new SyntaxException("unterminated ' quote at byte " + byteOffset(text, at));
                        }
                        closing = '\'';
                    }
                    case '"' -> {
                        boolean closed = false;
                        while (i < n) {
                            char q = text.charAt(i++);
                            if (q == '"') {
                                closed = true;
                                break;
                            }
                            if (q == '\\') {
                                char e = i < n ? text.charAt(i) : 0;
                                if (i < n && (e == '"' || e == '\\' || e == '$' || e == '`')) {
                                    value.append(e);
                                    i++;
                                } else if (i < n && e == '\n') {
                                    i++;
                                } else {
                                    value.append('\\');
                                }
                            } else {
                                value.append(q);
                            }
                        }
                        if (!closed) {
                            throw new SyntaxException("unterminated \" quote at byte " + byteOffset(text, at));
                        }
                        closing = '"';
                    }
                    case '\\' -> {
                        if (i < n) {
                            value.append(text.charAt(i++));
                        } else {
                            value.append('\\');
                        }
                    }
                    default -> value.append(c);
                }
            }
            words.add(new Word(value.toString(), start, i, closing));
        }
        return words;
    }

    /** The values of {@link #split}. */
    public static List<String> values(String text) throws SyntaxException {
        List<String> out = new ArrayList<>();
        for (Word w : split(text)) {
            out.add(w.value());
        }
        return out;
    }

    /** {@code s} as one shell word: unchanged when it needs no quoting, else single-quoted. */
    public static String quote(String s) {
        boolean plain = !s.isEmpty();
        for (int i = 0; i < s.length() && plain; i++) {
            char c = s.charAt(i);
            plain = (c < 128 && Character.isLetterOrDigit(c)) || "-_=./:,+@%".indexOf(c) >= 0;
        }
        return plain ? s : "'" + s.replace("'", "'\\''") + "'";
    }
}
