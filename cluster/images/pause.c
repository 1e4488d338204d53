/* The test cluster's pause (sandbox) container: holds the pod's namespaces until told to stop.
 *
 * Waits for signals: SIGINT and SIGTERM end it with status 0; SIGCHLD reaps exited children
 * (it is pid 1 of pods that share their process namespace). Built static, so the image is this
 * one file. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

int main(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        perror("pause: sigprocmask");
        return 1;
    }
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
            perror("pause: sigwait");
            return 1;
        }
        if (sig == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
            continue;
        }
        return 0;
    }
}
