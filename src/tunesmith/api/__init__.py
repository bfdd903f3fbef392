"""The HTTP layer: Bedrock's control-plane and runtime routes, the OpenAI-compatible routes,
their typed request and response models, wire encoding, auth, errors and middleware.

It stands on the job service (:mod:`tunesmith.jobs`) and inference (:mod:`tunesmith.inference`);
:func:`tunesmith.server.create_app` wires it together with the console.
"""
