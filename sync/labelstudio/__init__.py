"""Label Studio itself: a project through label-studio-sdk (:mod:`.project`), and a local Label Studio
server process for the demo and the tests (:mod:`.server`).
"""
