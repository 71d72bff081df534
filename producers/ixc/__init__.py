"""producers/ixc"""
