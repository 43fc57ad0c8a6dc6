"""CoMem: asynchronous k-step-off agent memory."""
